"""Stand-ins for ON24, Dataverse, Key Vault and Azurite, shared by the tests and the local demo.

Not deployed (listed in .funcignore). Each stand-in is a strict HTTP server on 127.0.0.1 that answers
the way the real service does, including its errors, so the production clients run unchanged against it.
"""
