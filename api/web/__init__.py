"""The web UI that `rollway serve` serves next to the API: server-rendered pages (Jinja) with a little script for
live updates. Pages read through the API's own handlers, so they show exactly what the token's role and project
may see, redacted as the API redacts."""
