"""Lineage export to open standards (OpenLineage), as run listeners.

``daskflow.lineage.openlineage`` holds the exporter; it imports the optional
``openlineage-python`` client lazily (``pip install 'daskflow[lineage]'``).
"""
