//! Past the context window, for chats (`contextOverflow: "drop-oldest"`): the oldest turns go,
//! one at a time, until the request fits. A turn is a non-system message and what follows it up
//! to the next user message (an assistant's reply, its tool calls and their results go with the
//! question they answer, so the roles still alternate as templates expect). System messages and
//! the last user turn always stay.

use std::ops::Range;

use super::ChatMessage;
use crate::error::Result;

/// The oldest turn that may go, if any.
pub fn oldest_turn(messages: &[ChatMessage]) -> Option<Range<usize>> {
    let start = messages.iter().position(|m| m.role != "system")?;
    let end = messages[start + 1..].iter().position(|m| m.role == "user").map(|i| start + 1 + i)?;
    Some(start..end)
}

/// `messages` less their oldest turns until `fits` says the rest does (or only what must stay is
/// left); and how many messages went.
pub fn drop_oldest(mut messages: Vec<ChatMessage>, mut fits: impl FnMut(&[ChatMessage]) -> Result<bool>) -> Result<(Vec<ChatMessage>, usize)> {
    let mut dropped = 0;
    while !fits(&messages)? {
        let Some(turn) = oldest_turn(&messages) else { break };
        dropped += turn.len();
        messages.drain(turn);
    }
    Ok((messages, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None, name: None }
    }

    #[test]
    fn whole_turns_go_oldest_first_and_system_and_the_last_question_stay() {
        let m = vec![
            msg("system", "s"),
            msg("user", "u1"),
            msg("assistant", "a1"),
            msg("user", "u2"),
            msg("assistant", "a2"),
            msg("tool", "t2"),
            msg("user", "u3"),
        ];
        let (kept, dropped) = drop_oldest(m.clone(), |m| Ok(m.len() <= 4)).unwrap();
        assert_eq!(kept.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["s", "u3"]);
        assert_eq!(dropped, 5);
        let (kept, dropped) = drop_oldest(m.clone(), |m| Ok(m.len() <= 5)).unwrap();
        assert_eq!(kept.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["s", "u2", "a2", "t2", "u3"]);
        assert_eq!(dropped, 2);
        // Nothing fits: everything that may go goes, and the rest is returned for the caller to refuse.
        let (kept, _) = drop_oldest(m, |_| Ok(false)).unwrap();
        assert_eq!(kept.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["s", "u3"]);
        assert_eq!(oldest_turn(&[msg("user", "only")]), None);
    }
}
