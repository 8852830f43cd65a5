"""The web side of the library server: the staff pages and the public catalogue.

Starlette + Jinja2, rendered on the server, with server-sent events for what changes
live: no front-end build, a few kilobytes of JavaScript, light enough for a Pi.
`server.web.run.start_web` serves it from a thread of the server process.
"""
