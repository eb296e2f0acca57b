"""The Streamlit page: an HTTP client of the search API (never imports the engine)."""
