"""Plugin packages: upload checks, storage, per-touchpoint config and the sandbox host.

manifest.py    touchgate-plugin.toml rules
package.py     the zip checks and extraction into a staging directory
repository.py  SQL
service.py     upload/list/delete rules and the touchpoint config contract
sandbox.py     isolation detection and the worker-process launch command
runner.py      the program that runs INSIDE the sandbox (stdlib only)
host.py        the service side: worker pools, timeouts, error mapping
endpoints.py   the REST routes and the lifespan hooks
"""
