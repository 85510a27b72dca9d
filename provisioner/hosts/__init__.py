"""Runner hosts over SSH: preflight checks, Ansible provisioning, the remote config.toml store.

- :mod:`provisioner.hosts.preflight`: ``host check`` (a catalogue of :class:`Check` objects);
- :mod:`provisioner.hosts.provision`: ``host provision`` (the packaged playbooks, progress
  events, recap);
- :mod:`provisioner.hosts.remote_store`: config.toml on a host, over SFTP, with the local
  store's guarantees.

paramiko and ansible-runner are reached only through :mod:`provisioner.ssh` and
:mod:`provisioner.ansible`.
"""
