"""GitLab adapters: the only code that imports python-gitlab or talks HTTP to GitLab.

- :mod:`.models`: typed values and enums;
- :mod:`.connection`: where GitLab is and which token to use;
- :mod:`.client`: :class:`~provisioner.gitlab.client.GitLabAPI`, the REST adapter.
"""
