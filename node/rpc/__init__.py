"""gRPC only: the wire mapping, the status table, the asyncio server and the client transports.

Nothing outside this package imports grpc or the generated code.
"""
