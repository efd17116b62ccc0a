"""Workloads run in the guest: fio jobs, liburing's test suite, the project's concern probes."""
