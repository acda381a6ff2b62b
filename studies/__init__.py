"""nasprune's study recipes, shipped as package data ``nasprune.studies`` (see ``nasprune.search.shipped``).

Edit the YAML files here; this file only makes the folder a package, so that wheels and editable installs carry it.
Studies' databases and artifacts written here are never shipped (only ``*.yaml`` is package data).
"""
