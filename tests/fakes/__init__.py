"""In-process stand-ins for services nothing real can run here (Azure Files).

Each is a real HTTP server on 127.0.0.1 driven by the real Azure SDK client.
"""
