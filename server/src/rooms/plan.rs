//! The automatic split: a balanced random assignment of people to rooms that respects each
//! room's remaining capacity, the manual choices already made, and pairs to keep together or
//! apart.
//!
//! Pairs kept together are placed as one group (with the room of a manually placed partner
//! when there is one). Keeping apart is honoured whenever capacity allows; when it cannot be,
//! capacity wins and the pair may share a room. Nobody is ever placed beyond a room's capacity:
//! who does not fit stays unassigned.

use std::collections::{BTreeMap, HashMap, HashSet};

use convene_protocol::{RoomId, UserId};
use rand::Rng;
use rand::seq::SliceRandom;

/// A room the split may fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub room: RoomId,
    pub capacity: u32,
}

/// The input of the split.
#[derive(Clone, Debug, Default)]
pub struct SplitRequest {
    pub rooms: Vec<Slot>,
    /// Choices already made; they count against capacity and anchor their partners.
    pub fixed: HashMap<UserId, RoomId>,
    /// People to place.
    pub people: Vec<UserId>,
    pub keep_together: Vec<[UserId; 2]>,
    pub keep_apart: Vec<[UserId; 2]>,
}

/// The split's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub placed: HashMap<UserId, RoomId>,
    pub unplaced: Vec<UserId>,
}

pub fn split(request: &SplitRequest, rng: &mut impl Rng) -> Split {
    let to_place: HashSet<UserId> = request.people.iter().copied().filter(|p| !request.fixed.contains_key(p)).collect();
    // Groups of people who stay together (union of pairs), each with an anchor room if any
    // member was placed by hand.
    let mut group_of: HashMap<UserId, usize> = HashMap::new();
    let mut groups: Vec<Vec<UserId>> = Vec::new();
    for person in request.people.iter().filter(|p| to_place.contains(p)) {
        group_of.insert(*person, groups.len());
        groups.push(vec![*person]);
    }
    let mut anchors: HashMap<usize, RoomId> = HashMap::new();
    for [a, b] in &request.keep_together {
        match (group_of.get(a).copied(), group_of.get(b).copied()) {
            (Some(ga), Some(gb)) if ga != gb => {
                let moved = std::mem::take(&mut groups[gb]);
                for person in &moved {
                    group_of.insert(*person, ga);
                }
                groups[ga].extend(moved);
                if let Some(room) = anchors.remove(&gb) {
                    anchors.entry(ga).or_insert(room);
                }
            }
            (Some(g), None) => {
                if let Some(room) = request.fixed.get(b) {
                    anchors.entry(g).or_insert(*room);
                }
            }
            (None, Some(g)) => {
                if let Some(room) = request.fixed.get(a) {
                    anchors.entry(g).or_insert(*room);
                }
            }
            _ => {}
        }
    }
    let mut occupants: BTreeMap<RoomId, Vec<UserId>> =
        request.rooms.iter().map(|slot| (slot.room, Vec::new())).collect();
    for (person, room) in &request.fixed {
        if let Some(list) = occupants.get_mut(room) {
            list.push(*person);
        }
    }
    let capacity: HashMap<RoomId, usize> = request.rooms.iter().map(|s| (s.room, s.capacity as usize)).collect();

    let apart: HashMap<UserId, Vec<UserId>> = request.keep_apart.iter().fold(HashMap::new(), |mut map, [a, b]| {
        map.entry(*a).or_default().push(*b);
        map.entry(*b).or_default().push(*a);
        map
    });

    let mut order: Vec<usize> = (0..groups.len()).filter(|g| !groups[*g].is_empty()).collect();
    order.shuffle(rng);
    // Groups bound to a room first, before others take its places; then larger groups, so that
    // pairs still find a room with two places; then people with someone to keep apart from,
    // while every room still has a choice of places.
    order.sort_by_key(|g| {
        (
            !anchors.contains_key(g),
            std::cmp::Reverse(groups[*g].len()),
            !groups[*g].iter().any(|p| apart.contains_key(p)),
        )
    });

    let mut result = Split::default();
    for g in order {
        let group = &groups[g];
        let fits = |room: &RoomId, occupants: &BTreeMap<RoomId, Vec<UserId>>| {
            occupants.get(room).map_or(0, Vec::len) + group.len() <= capacity.get(room).copied().unwrap_or(0)
        };
        let conflicts = |room: &RoomId, occupants: &BTreeMap<RoomId, Vec<UserId>>| {
            occupants.get(room).is_some_and(|present| {
                group.iter().any(|p| apart.get(p).is_some_and(|avoid| avoid.iter().any(|a| present.contains(a))))
            })
        };
        let chosen = match anchors.get(&g) {
            Some(room) if fits(room, &occupants) => Some(*room),
            Some(_) => None,
            None => {
                // The least full room that fits, preferring one without a pair to keep apart;
                // ties are broken at random.
                let mut candidates: Vec<RoomId> = occupants.keys().copied().filter(|r| fits(r, &occupants)).collect();
                candidates.shuffle(rng);
                candidates.sort_by_key(|r| (conflicts(r, &occupants), occupants.get(r).map_or(0, Vec::len)));
                candidates.first().copied()
            }
        };
        match chosen {
            Some(room) => {
                for person in group {
                    result.placed.insert(*person, room);
                }
                if let Some(list) = occupants.get_mut(&room) {
                    list.extend(group.iter().copied());
                }
            }
            None => result.unplaced.extend(group.iter().copied()),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use uuid::Uuid;

    use super::*;

    fn users(n: usize) -> Vec<UserId> {
        (0..n).map(|_| UserId(Uuid::new_v4())).collect()
    }

    fn rooms(capacities: &[u32]) -> Vec<Slot> {
        capacities.iter().map(|c| Slot { room: RoomId(Uuid::new_v4()), capacity: *c }).collect()
    }

    fn counts(split: &Split, rooms: &[Slot]) -> Vec<usize> {
        rooms.iter().map(|slot| split.placed.values().filter(|r| **r == slot.room).count()).collect()
    }

    #[test]
    fn splits_evenly_within_capacity_and_leaves_the_rest_unplaced() {
        let cases: [(&[u32], usize, &[usize], usize); 4] = [
            (&[10, 10, 10], 30, &[10, 10, 10], 0),
            (&[10, 10, 10], 9, &[3, 3, 3], 0),
            (&[2, 2], 7, &[2, 2], 3),
            (&[5, 1], 4, &[3, 1], 0),
        ];
        for (seed, (capacities, people, expected, unplaced)) in cases.into_iter().enumerate() {
            let slots = rooms(capacities);
            let request = SplitRequest { rooms: slots.clone(), people: users(people), ..SplitRequest::default() };
            let split = split(&request, &mut StdRng::seed_from_u64(seed as u64));
            assert_eq!(counts(&split, &slots), expected, "{capacities:?} {people}");
            assert_eq!(split.unplaced.len(), unplaced, "{capacities:?} {people}");
        }
    }

    #[test]
    fn keeps_manual_choices_and_pairs_together_or_apart() {
        for seed in 0..50 {
            let slots = rooms(&[3, 3, 3]);
            let people = users(8);
            let mentor = UserId(Uuid::new_v4());
            let fixed = HashMap::from([(mentor, slots[2].room)]);
            let request = SplitRequest {
                rooms: slots.clone(),
                fixed: fixed.clone(),
                people: people.iter().copied().chain([mentor]).collect(),
                keep_together: vec![[mentor, people[0]], [people[1], people[2]]],
                keep_apart: vec![[people[3], people[4]]],
            };
            let split = split(&request, &mut StdRng::seed_from_u64(seed));
            assert!(!split.placed.contains_key(&mentor), "manual choices are not re-placed");
            assert_eq!(split.placed.get(&people[0]), Some(&slots[2].room), "the mentee joins the mentor");
            assert_eq!(split.placed.get(&people[1]), split.placed.get(&people[2]), "the pair stays together");
            assert_ne!(split.placed.get(&people[3]), split.placed.get(&people[4]), "the pair stays apart");
            let mut with_fixed = counts(&split, &slots);
            with_fixed[2] += 1;
            assert!(with_fixed.iter().all(|c| *c <= 3), "capacity holds: {with_fixed:?}");
            assert!(split.unplaced.is_empty());
        }
    }
}
