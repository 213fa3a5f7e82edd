"""choreo: saga choreography over Kafka with the transactional outbox and Debezium CDC.

The one top-level package the distribution installs. Its subpackages live in the
repository's own top-level folders (``outbox/`` is ``choreo.outbox``, ``services/`` is
``choreo.services``, ...; the mapping is ``[tool.setuptools.package-dir]`` in
pyproject.toml), so the tree keeps the layout the design names while an installed
choreo never claims generic names such as ``cli``, ``services`` or ``outbox`` in a
user's site-packages (docs/library.md says why this way).
"""
