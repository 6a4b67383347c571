"""Webhook listener, queue, worker pipeline and publishers."""
