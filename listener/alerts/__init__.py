"""Alerts about verdicts, sent through apprise (``GUARD_NOTIFY``) to where people look.

:mod:`listener.alerts.message` composes one message per verdict (pure), :mod:`listener.alerts.send` hands
it to apprise, :mod:`listener.alerts.deliver` makes sure it goes out once, after the verdict, with retries.
"""
