//! `[[routes.clients]]`: the IdPs a route admits, each known by the SHA-256 of its bearer token(s).

use super::Validator;
use crate::config::model::Client;
use crate::config::raw::RawClient;

impl Validator {
    /// A route's clients; names and token hashes must be unique within the route.
    pub(super) fn clients(&mut self, key: &str, raw: Vec<RawClient>) -> Vec<Client> {
        if raw.is_empty() {
            self.problem(
                &format!("{key}.clients"),
                "at least one [[routes.clients]] is required: without one, every request is refused",
            );
        }
        let mut clients: Vec<Client> = Vec::new();
        for (j, c) in raw.into_iter().enumerate() {
            let ckey = format!("{key}.clients[{j}]");
            let Some(client) = self.client(&ckey, c) else {
                continue;
            };
            if clients.iter().any(|o| o.name == client.name) {
                self.problem(
                    &format!("{ckey}.name"),
                    format!("{:?} is used by another client of this route", client.name),
                );
            }
            for h in &client.token_sha256 {
                if let Some(o) = clients.iter().find(|o| o.token_sha256.contains(h)) {
                    self.problem(
                        &format!("{ckey}.token_sha256"),
                        format!(
                            "the same token hash is already given to client {:?}",
                            o.name
                        ),
                    );
                }
            }
            clients.push(client);
        }
        clients
    }

    fn client(&mut self, key: &str, c: RawClient) -> Option<Client> {
        let before = self.found.count();
        let name = self.name(
            &format!("{key}.name"),
            c.name,
            "required: the IdP's name, as logs and metrics show it",
        );
        let mut hashes = Vec::new();
        match c.token_sha256 {
            Some(h) => hashes.extend(self.sha256(&format!("{key}.token_sha256"), &h)),
            None => self.problem(
                &format!("{key}.token_sha256"),
                "required: the hex SHA-256 of the bearer token this IdP sends (see `scim-proxy hash-token`)",
            ),
        }
        let additional = c.additional_token_sha256.unwrap_or_default();
        for (k, h) in additional.iter().enumerate() {
            let hkey = format!("{key}.additional_token_sha256[{k}]");
            if let Some(h) = self.sha256(&hkey, h) {
                if hashes.contains(&h) {
                    self.problem(&hkey, "listed twice");
                }
                hashes.push(h);
            }
        }
        (self.found.count() == before).then_some(Client {
            name,
            token_sha256: hashes,
        })
    }
}
