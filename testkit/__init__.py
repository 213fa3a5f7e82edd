"""What tests, chaos runs and benchmarks share to drive and observe the running system.

An orders client, a shop that makes SKUs of its own, and an auditor's observer. It sits
above the services and the stack, below the command line.
"""
