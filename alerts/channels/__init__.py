"""Delivery channels. Each is a small class on `alerts.channels.base.Channel`."""
