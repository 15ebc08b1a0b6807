//! Which Docker engine the jobs talk to: this machine's, or another host's over SSH, named the
//! way the docker CLI names them (`--host ssh://user@host[:port]`, `DOCKER_HOST`, Docker
//! contexts in `~/.docker/contexts`, the current context).
//!
//! A remote host is reached through one `ssh` process per host that forwards a local Unix
//! socket to the host's Docker socket (`/var/run/docker.sock`), so bollard talks to it as to a
//! local daemon. (bollard 0.21.1's own `ssh` transport hands `user@host:port` to openssh as a
//! host name, so a custom port never reaches `ssh`; and it needs the docker CLI on the remote
//! for `docker system dial-stdio`. A forwarded socket needs neither, and uses the user's own
//! `ssh`, keys, agent and `~/.ssh/config`.) Servers bound to the host's loopback are reached
//! through local TCP forwards on the same terms ([`Sessions::reach`]).
//!
//! The `ssh` processes run a remote `cat` that reads our end of a pipe: however vlmctl ends,
//! kill -9 included, the pipe closes, `cat` ends and `ssh` with it, and no forward outlives us.
//!
//! An `ssh` that ends while vlmctl still runs (a network blip, sshd restarted) is started again
//! on the same local socket path or port, [`REOPEN_TRIES`] times with a growing pause, and the
//! front-end is told ([`LinkNotice`]); bollard connects to the socket path for every request,
//! so the next request finds the new one. A Docker request checks its forward before it is
//! sent, and waits for it to be back. A forward closed on purpose ([`Sessions::close`]) is never
//! started again.

//!
//! Nothing here is process-global: the `ssh` processes, their folders and the helper containers
//! handed out belong to a [`Sessions`] value the front-end creates (and closes on its way out),
//! and which engine a job talks to is the [`crate::Engine`] it is given.
//!
//! - `host`: what an engine is ([`Host`], [`SshHost`]) and where its state lives.
//! - `resolve`: which engine the user named (pure but for reading the docker CLI's folder).
//! - `ssh`: one supervised `ssh -L` forward, started again when it ends under us.
//! - `sessions`: the [`Sessions`] pool (one [`Session`] per host, its TCP forwards).
//! - `relay`: the local port in front of a TCP forward, which outlives the `ssh` behind it.

mod host;
mod relay;
mod resolve;
mod sessions;
mod ssh;

pub(crate) use host::HOSTS_FOLDER;
pub use host::{DEFAULT_SOCKET, Host, SshHost, machine_name, path_safe};
pub use resolve::{Context, contexts, current_context, docker_config_dir, parse_ssh, resolve};
pub use sessions::{HELPERS_PATIENCE, Session, Sessions};
pub use ssh::{LinkNotice, REOPEN_TRIES, SSH_TIMEOUT};
