"""The safety policy engine: one rule implementation for suggestions and
for the send path, the policy file, guardian oversight and exposure
memory. Plain Python over ``graph``; no gRPC."""
