"""idverify: real-name identity verification as a gRPC service."""
