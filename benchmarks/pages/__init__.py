"""The pages of docs/results.md, one module per benchmark family (see ``benchmarks/results_page.py``).

Every module here not starting with ``_`` is a page: it declares the JSON files it owns, its section(s) of
docs/results.md (title, place) with their renderers in ``SECTIONS``, and the generated blocks it writes into
hand-written pages in ``EMBEDS``. The driver finds them by listing this folder, so adding a benchmark family's page is
adding one file; a result JSON that no page owns stops the build instead of being published without its figures.
"""
