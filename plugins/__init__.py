"""Built-in method plugins, installed as ``adapterhub.default_plugins``.

Each one is written exactly like a third-party plugin: it implements the public
``register_methods`` hook and uses only the public ``adapterhub`` API.
"""
