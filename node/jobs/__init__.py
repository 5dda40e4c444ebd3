"""What a serving node does on its own: sweeps, the notification outbox, epochs (not built yet)."""
