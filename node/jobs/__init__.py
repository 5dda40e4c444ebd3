"""What a serving node does on its own, beside the server: re-reading node.toml, erasing
records past their retention (more to come: sweeps, the notification outbox). Each job is
`async def job(node: NodeContext) -> None`, run by `node.rpc.server.serve(jobs=...)` until
the server stops."""
