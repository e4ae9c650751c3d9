"""Typed settings: AllTalk's JSON files (read from the server root) and the Serve application args."""
