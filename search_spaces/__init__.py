"""nasprune's search space files, shipped as package data ``nasprune.search_spaces`` (see ``nasprune.search.shipped``).

Edit the YAML files here; this file only makes the folder a package, so that wheels and editable installs carry it.
"""
