"""Route handlers shared by the Azure Functions app and the local server.

Handlers are Starlette ``Request -> Response`` coroutines taking an ``AppContext``.
``function_app.py`` registers each ``ApiRoute`` as an HTTP function through
``azurefunctions-extensions-http-fastapi`` (whose requests and responses are
Starlette's, and which streams); ``gitops-sync serve`` mounts the same list in
a Starlette app under uvicorn.
"""
