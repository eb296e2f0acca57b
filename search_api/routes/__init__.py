"""HTTP routes: ``health`` is open; everything else lives under ``/v1`` behind the API key."""
