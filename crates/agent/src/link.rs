//! One VM's agent line as a backend keeps it: the client, and whether the agent has
//! answered yet (the first command may arrive while the guest still boots).

use std::time::Duration;

use crate::{AgentClient, AgentError, ExecOutput};

pub struct AgentLink {
    client: AgentClient,
    ready: bool,
    ready_wait: Duration,
}

impl AgentLink {
    /// `ready_wait`: how long the first command waits for the agent to come up.
    pub fn new(client: AgentClient, ready_wait: Duration) -> Self {
        AgentLink { client, ready: false, ready_wait }
    }

    /// Runs `command` once the agent is up (see [`AgentClient::exec_unless`]).
    pub fn exec(
        &mut self,
        command: &str,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<ExecOutput, AgentError> {
        if !self.ready {
            self.client.wait_ready(self.ready_wait)?;
            self.ready = true;
        }
        self.client.exec_unless(command, timeout, cancelled)
    }
}
