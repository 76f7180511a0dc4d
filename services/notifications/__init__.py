"""Notifications: SMS and WeChat messages to customers and staff, from other services' events."""
