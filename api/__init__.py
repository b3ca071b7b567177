"""The HTTP API (Flask app factory and blueprints) and the `rollway` command line."""
