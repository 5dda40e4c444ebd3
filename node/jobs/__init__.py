"""What a serving node does on its own, beside the server: re-reading node.toml, erasing
records past their retention, notifying new hits to webhooks (notify),
deconfliction sweeps of operations lists (sweeps). Each job is
`async def job(node: NodeContext) -> None`, run by `node.rpc.server.serve(jobs=...)` until
the server stops."""
