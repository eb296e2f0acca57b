"""The ``cxr`` command line: the top layer, above ``embed``, ``index`` and ``search_api``.

Nothing imports this package; it dispatches to the layers below it.
"""
