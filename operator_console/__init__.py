"""The process: the aiohttp app, REST API, WebSocket, pages and the `yijing` CLI."""
