//! Who may open a conversation with whom: a pure decision over the facts the backend keeps in
//! sync (profiles, partner programmes, care relationships) and the blocks users set.

use convene_protocol::{ErrorCode, OrgId, Role, UserId};

use crate::store::{ChatProfile, PersonKind, Visibility};

/// What the rules need to know about a would-be pair; the caller gathers it from the store.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    /// The caller's organization, from their token.
    pub organization: Option<OrgId>,
    pub caller: UserId,
    /// What the caller is: their profile's kind, or else their token's role.
    pub caller_kind: PersonKind,
    /// The other user's profile; a user without one is unknown here.
    pub other: Option<ChatProfile>,
    /// Whether the two share an active partner programme.
    pub share_programme: bool,
    /// Whether the therapist of the pair (if any) cares for its patient.
    pub cares_for: bool,
    /// Whether either blocked the other.
    pub blocked: bool,
}

/// Why a conversation may not be opened; each maps to a stable error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such user")]
    UnknownUser,
    #[error("you cannot open a conversation with yourself")]
    Yourself,
    #[error("this mentor does not take messages")]
    ChatDisabled,
    #[error("this profile is private")]
    Private,
    #[error("this mentor is visible only to members of their partner programmes")]
    NoSharedProgramme,
    #[error("patients can message only their own therapists")]
    NotYourTherapist,
    #[error("one of you has blocked the other")]
    Blocked,
}

impl Refusal {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::UnknownUser => ErrorCode::NotFound,
            Self::Yourself => ErrorCode::Invalid,
            _ => ErrorCode::Forbidden,
        }
    }
}

/// What a user without a profile is taken to be: their token's role.
pub fn kind_of_role(role: Role) -> PersonKind {
    match role {
        Role::Patient => PersonKind::Patient,
        Role::Therapist => PersonKind::Therapist,
        Role::Mentor => PersonKind::Mentor,
        Role::Mentee => PersonKind::Mentee,
        Role::Admin | Role::Support => PersonKind::Member,
    }
}

/// Decides whether the caller may open a conversation with the other user. The other user must
/// be known in the caller's organization (anything else answers `not_found`, so nothing of
/// another organization shows); then:
/// - either side's block refuses it;
/// - a patient reaches only their own therapists, and a therapist only their own patients;
/// - a mentee reaches a mentor only if the mentor has chat on and is visible to them (public, or
///   partners-only and they share an active programme; never private).
///
/// Anyone else in the organization may talk to each other.
pub fn may_open(facts: &Facts) -> Result<(), Refusal> {
    let other = facts.other.ok_or(Refusal::UnknownUser)?;
    if facts.organization != Some(other.organization_id) {
        return Err(Refusal::UnknownUser);
    }
    if facts.caller == other.user_id {
        return Err(Refusal::Yourself);
    }
    if facts.blocked {
        return Err(Refusal::Blocked);
    }
    let kinds = (facts.caller_kind, other.kind);
    if matches!(kinds, (PersonKind::Patient, _) | (_, PersonKind::Patient)) {
        let care_pair = matches!(
            kinds,
            (PersonKind::Patient, PersonKind::Therapist) | (PersonKind::Therapist, PersonKind::Patient)
        );
        return if care_pair && facts.cares_for { Ok(()) } else { Err(Refusal::NotYourTherapist) };
    }
    if kinds == (PersonKind::Mentee, PersonKind::Mentor) {
        if !other.chat_enabled {
            return Err(Refusal::ChatDisabled);
        }
        return match other.visibility {
            Visibility::Public => Ok(()),
            Visibility::PartnersOnly if facts.share_programme => Ok(()),
            Visibility::PartnersOnly => Err(Refusal::NoSharedProgramme),
            Visibility::Private => Err(Refusal::Private),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(org: OrgId, kind: PersonKind, chat_enabled: bool, visibility: Visibility) -> ChatProfile {
        ChatProfile { user_id: UserId::new_v4(), organization_id: org, kind, chat_enabled, visibility }
    }

    #[test]
    fn each_rule_decides_as_documented() {
        use PersonKind::*;
        use Visibility::*;
        let org = OrgId::new_v4();
        let elsewhere = OrgId::new_v4();
        // (case, caller kind, other's profile, shared programme, cares for, blocked, expected)
        type Case = (&'static str, PersonKind, Option<ChatProfile>, bool, bool, bool, Result<(), Refusal>);
        let cases: [Case; 15] = [
            (
                "mentee to a public mentor",
                Mentee,
                Some(profile(org, Mentor, true, Public)),
                false,
                false,
                false,
                Ok(()),
            ),
            (
                "mentor with chat off",
                Mentee,
                Some(profile(org, Mentor, false, Public)),
                false,
                false,
                false,
                Err(Refusal::ChatDisabled),
            ),
            (
                "private mentor",
                Mentee,
                Some(profile(org, Mentor, true, Private)),
                true,
                false,
                false,
                Err(Refusal::Private),
            ),
            (
                "partners-only, shared",
                Mentee,
                Some(profile(org, Mentor, true, PartnersOnly)),
                true,
                false,
                false,
                Ok(()),
            ),
            (
                "partners-only, none shared",
                Mentee,
                Some(profile(org, Mentor, true, PartnersOnly)),
                false,
                false,
                false,
                Err(Refusal::NoSharedProgramme),
            ),
            ("mentor to a mentee", Mentor, Some(profile(org, Mentee, false, Private)), false, false, false, Ok(())),
            (
                "blocked either way",
                Mentee,
                Some(profile(org, Mentor, true, Public)),
                false,
                false,
                true,
                Err(Refusal::Blocked),
            ),
            (
                "patient to own therapist",
                Patient,
                Some(profile(org, Therapist, true, Public)),
                false,
                true,
                false,
                Ok(()),
            ),
            (
                "patient to another therapist",
                Patient,
                Some(profile(org, Therapist, true, Public)),
                false,
                false,
                false,
                Err(Refusal::NotYourTherapist),
            ),
            (
                "therapist to own patient",
                Therapist,
                Some(profile(org, Patient, true, Public)),
                false,
                true,
                false,
                Ok(()),
            ),
            (
                "therapist to another's patient",
                Therapist,
                Some(profile(org, Patient, true, Public)),
                false,
                false,
                false,
                Err(Refusal::NotYourTherapist),
            ),
            (
                "patient to a mentor",
                Patient,
                Some(profile(org, Mentor, true, Public)),
                false,
                false,
                false,
                Err(Refusal::NotYourTherapist),
            ),
            ("member to member", Member, Some(profile(org, Member, true, Private)), false, false, false, Ok(())),
            (
                "another organization",
                Member,
                Some(profile(elsewhere, Member, true, Public)),
                false,
                false,
                false,
                Err(Refusal::UnknownUser),
            ),
            ("unknown user", Member, None, false, false, false, Err(Refusal::UnknownUser)),
        ];
        for (case, kind, other, share_programme, cares_for, blocked, expected) in cases {
            let facts = Facts {
                organization: Some(org),
                caller: UserId::new_v4(),
                caller_kind: kind,
                other,
                share_programme,
                cares_for,
                blocked,
            };
            assert_eq!(may_open(&facts), expected, "{case}");
        }
    }

    #[test]
    fn a_caller_without_an_organization_reaches_nobody() {
        let org = OrgId::new_v4();
        let other = profile(org, PersonKind::Member, true, Visibility::Public);
        let facts = Facts {
            organization: None,
            caller: UserId::new_v4(),
            caller_kind: PersonKind::Member,
            other: Some(other),
            share_programme: false,
            cares_for: false,
            blocked: false,
        };
        assert_eq!(may_open(&facts), Err(Refusal::UnknownUser));
    }
}
