//! Dispatch: one engine intent ([`Command`]) to the method that carries it out, and its answer
//! to the group commit.

use super::{json, Command, Done, Engine, Tx};
use crate::events::Event;
use crate::model::{keys, now_ms, Settings};
use crate::store::Tree;
use tokio::sync::oneshot;

impl Engine {
    pub(super) fn process(
        &mut self,
        command: Command,
        done: &mut Vec<Done>,
        events: &mut Vec<Event>,
    ) {
        let mut tx = Tx::default();
        let finish = match command {
            Command::CreateUser {
                username,
                password_hash,
                display_name,
                force_admin,
                bypass_registration,
                reply,
            } => {
                let result = self.create_user(
                    &mut tx,
                    &username,
                    password_hash,
                    display_name,
                    force_admin,
                    bypass_registration,
                );
                self.finish(tx, result, reply, events)
            }
            Command::SetPassword { username, password_hash, reply } => {
                let result = self.set_password(&mut tx, &username, password_hash);
                self.finish(tx, result, reply, events)
            }
            Command::UpdateProfile { user, patch, reply } => {
                let result = self.update_profile(&mut tx, &user, patch);
                self.finish(tx, result, reply, events)
            }
            Command::SetRegistrationOpen { open, reply } => {
                let settings = Settings { registration_open: open };
                tx.batch.put(Tree::Meta, b"settings".to_vec(), json(&settings));
                self.finish(tx, Ok(settings), reply, events)
            }
            Command::SetDisabled { user, disabled, reply } => {
                let result = self.set_disabled(&mut tx, &user, disabled);
                self.finish(tx, result, reply, events)
            }
            Command::CreateChannel { creator, name, topic, visibility, reply } => {
                let result = self.create_channel(&mut tx, &creator, name, topic, visibility);
                self.finish(tx, result, reply, events)
            }
            Command::OpenDm { creator, others, reply } => {
                let result = self.open_dm(&mut tx, &creator, others);
                self.finish(tx, result, reply, events)
            }
            Command::UpdateChat { user, chat, name, topic, reply } => {
                let result = self.update_chat(&mut tx, &user, &chat, name, topic);
                self.finish(tx, result, reply, events)
            }
            Command::Join { user, chat, reply } => {
                let result = self.join(&mut tx, &user, &chat);
                self.finish(tx, result, reply, events)
            }
            Command::Leave { user, chat, reply } => {
                let result = self.leave(&mut tx, &user, &chat);
                self.finish(tx, result, reply, events)
            }
            Command::AddMember { by, chat, target, role, reply } => {
                let result = self.add_member(&mut tx, &by, &chat, &target, role);
                self.finish(tx, result, reply, events)
            }
            Command::SetRole { by, chat, target, role, reply } => {
                let result = self.set_role(&mut tx, &by, &chat, &target, role);
                self.finish(tx, result, reply, events)
            }
            Command::RemoveMember { by, chat, target, reply } => {
                let result = self.remove_member(&mut tx, &by, &chat, &target);
                self.finish(tx, result, reply, events)
            }
            Command::Send { user, chat, body, reply_to, client_id, attachments, reply } => {
                let result =
                    self.send(&mut tx, &user, &chat, body, reply_to, client_id, attachments);
                self.finish(tx, result, reply, events)
            }
            Command::RecordUpload { user, blobs, reply } => {
                let at = now_ms().to_be_bytes().to_vec();
                for blob in &blobs {
                    tx.batch.put(Tree::Uploads, keys::upload(&user, blob), at.clone());
                }
                self.finish(tx, Ok(()), reply, events)
            }
            Command::Edit { user, chat, message, body, reply } => {
                let result = self.edit(&mut tx, &user, &chat, &message, body);
                self.finish(tx, result, reply, events)
            }
            Command::Delete { user, node_admin, chat, message, reply } => {
                let result = self.delete(&mut tx, &user, node_admin, &chat, &message);
                self.finish(tx, result, reply, events)
            }
            Command::SetNotificationLevel { user, chat, level, reply } => {
                let result = self.set_notification_level(&mut tx, &user, &chat, level);
                self.finish(tx, result, reply, events)
            }
            Command::SetDoNotDisturb { user, until_ms, reply } => {
                let result = self.set_do_not_disturb(&mut tx, &user, until_ms);
                self.finish(tx, result, reply, events)
            }
            Command::React { user, chat, message, emoji, on, reply } => {
                let result = self.react(&mut tx, &user, &chat, &message, &emoji, on);
                self.finish(tx, result, reply, events)
            }
            Command::MarkRead { user, chat, message, reply } => {
                let result = self.mark_read(&mut tx, &user, &chat, &message);
                self.finish(tx, result, reply, events)
            }
            Command::MarkReceived { chat, message, by } => {
                let result = self.mark_received(&mut tx, &chat, &message, &by);
                let (sender, _) = oneshot::channel();
                self.finish(tx, result, sender, events)
            }
            Command::RegisterDevice { device, devices_max, reply } => {
                let result = self.register_device(&mut tx, device, devices_max);
                self.finish(tx, result, reply, events)
            }
            Command::RevokeDevice { user, device, renunciations_max, reply } => {
                let result = self.revoke_device(&mut tx, &user, &device, renunciations_max);
                self.finish(tx, result, reply, events)
            }
            Command::SetDeviceRelay { user, device, relay, renunciations_max, reply } => {
                let result =
                    self.set_device_relay(&mut tx, &user, &device, relay, renunciations_max);
                self.finish(tx, result, reply, events)
            }
            Command::ForgetRenunciation { key, reply } => {
                let result = self.forget_renunciation(&mut tx, key);
                self.finish(tx, result, reply, events)
            }
            Command::MarkNotified { chat, message } => {
                let result = self.mark_notified(&mut tx, &chat, &message);
                let (sender, _) = oneshot::channel();
                self.finish(tx, result, sender, events)
            }
            Command::ApplyRemote { changes, reply } => {
                let verdicts = self.apply_remote_changes(changes, events);
                self.finish(tx, Ok(verdicts), reply, events)
            }
            Command::Ping { reply } => self.finish(tx, Ok(()), reply, events),
            Command::DocHeads { doc, reply } => {
                let result = self.doc_heads(doc);
                self.finish(tx, result, reply, events)
            }
            Command::SetPeer { org, record, reply } => {
                let result = self.set_peer(&mut tx, org, record);
                self.finish(tx, result, reply, events)
            }
        };
        done.push(finish);
    }
}
