"""Parts of the page: the sidebar controls and the result views."""
