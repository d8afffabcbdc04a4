"""Development tooling, not shipped in the production image: the embedded dev stack
(`python -m devtools.devstack`) and the real servers tests and benchmarks start (`devtools.testing`)."""
