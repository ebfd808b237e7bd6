"""Generated protobuf and gRPC code for idverify.v1. Never edit by hand."""
