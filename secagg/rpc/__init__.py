"""gRPC glue shared by the server and the agents: identities, channels, chunking, errors."""
