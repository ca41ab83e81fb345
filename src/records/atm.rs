//! ATM incident kinds and categories of the regulation (SPEC §3.3, §6.7.2–6.7.3).
//!
//! The categories are the regulation's own list, with their Russian names kept word for
//! word (they appear on forms the departments read) and a stable ASCII code each, which is
//! what the database, the API and the classifier use. Adding a category is a change to
//! the regulation, so the list is a closed enum rather than configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The two kinds of ATM ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    /// "Нарушение порядка штатного функционирования банкомата" (§6.7.2): goes to the card
    /// business department.
    AtmFault,
    /// "Нарушение обеспечения защиты информации … с применением банкоматов" (§6.7.3): goes
    /// to the security service and the card department at once; the ATM is suspended.
    AtmSecurity,
}

impl TicketKind {
    pub const ALL: [TicketKind; 2] = [TicketKind::AtmFault, TicketKind::AtmSecurity];

    pub fn code(self) -> &'static str {
        match self {
            TicketKind::AtmFault => "atm_fault",
            TicketKind::AtmSecurity => "atm_security",
        }
    }

    pub fn name_ru(self) -> &'static str {
        match self {
            TicketKind::AtmFault => "Нарушение порядка штатного функционирования банкомата",
            TicketKind::AtmSecurity => {
                "Нарушение обеспечения защиты информации при осуществлении переводов денежных \
                 средств с применением банкоматов"
            }
        }
    }

    pub fn parse(code: &str) -> Option<TicketKind> {
        TicketKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The categories of this kind, in the regulation's order.
    pub fn categories(self) -> impl Iterator<Item = AtmCategory> {
        AtmCategory::ALL
            .into_iter()
            .filter(move |c| c.kind() == self)
    }
}

/// One category of SPEC §3.3; [`AtmCategory::kind`] says which ticket kind it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtmCategory {
    FaultSwitchedOff,
    FaultKeysUnresponsive,
    FaultStrangeNoises,
    FaultBlinking,
    FaultBlackScreen,
    FaultNoReceipt,
    FaultCardCapturedWithMessage,
    FaultOutOfCash,
    FaultWrongAmount,
    FaultOther,
    SecurityPhysicalDamage,
    SecuritySkimmer,
    SecurityKeypadOverlay,
    SecurityCashSlotOverlay,
    SecurityHiddenCamera,
    SecurityUnusualLook,
    SecurityForeignObjectInCardSlot,
    SecurityCashNotDispensedTakeMessage,
    SecurityCardCapturedWithoutMessage,
    SecurityOther,
}

impl AtmCategory {
    pub const ALL: [AtmCategory; 20] = [
        AtmCategory::FaultSwitchedOff,
        AtmCategory::FaultKeysUnresponsive,
        AtmCategory::FaultStrangeNoises,
        AtmCategory::FaultBlinking,
        AtmCategory::FaultBlackScreen,
        AtmCategory::FaultNoReceipt,
        AtmCategory::FaultCardCapturedWithMessage,
        AtmCategory::FaultOutOfCash,
        AtmCategory::FaultWrongAmount,
        AtmCategory::FaultOther,
        AtmCategory::SecurityPhysicalDamage,
        AtmCategory::SecuritySkimmer,
        AtmCategory::SecurityKeypadOverlay,
        AtmCategory::SecurityCashSlotOverlay,
        AtmCategory::SecurityHiddenCamera,
        AtmCategory::SecurityUnusualLook,
        AtmCategory::SecurityForeignObjectInCardSlot,
        AtmCategory::SecurityCashNotDispensedTakeMessage,
        AtmCategory::SecurityCardCapturedWithoutMessage,
        AtmCategory::SecurityOther,
    ];

    /// The stable code stored in the database and used by the API.
    pub fn code(self) -> &'static str {
        use AtmCategory::*;
        match self {
            FaultSwitchedOff => "fault_switched_off",
            FaultKeysUnresponsive => "fault_keys_unresponsive",
            FaultStrangeNoises => "fault_strange_noises",
            FaultBlinking => "fault_blinking",
            FaultBlackScreen => "fault_black_screen",
            FaultNoReceipt => "fault_no_receipt",
            FaultCardCapturedWithMessage => "fault_card_captured_with_message",
            FaultOutOfCash => "fault_out_of_cash",
            FaultWrongAmount => "fault_wrong_amount",
            FaultOther => "fault_other",
            SecurityPhysicalDamage => "security_physical_damage",
            SecuritySkimmer => "security_skimmer",
            SecurityKeypadOverlay => "security_keypad_overlay",
            SecurityCashSlotOverlay => "security_cash_slot_overlay",
            SecurityHiddenCamera => "security_hidden_camera",
            SecurityUnusualLook => "security_unusual_look",
            SecurityForeignObjectInCardSlot => "security_foreign_object_in_card_slot",
            SecurityCashNotDispensedTakeMessage => "security_cash_not_dispensed_take_message",
            SecurityCardCapturedWithoutMessage => "security_card_captured_without_message",
            SecurityOther => "security_other",
        }
    }

    /// The regulation's wording (SPEC §3.3).
    pub fn name_ru(self) -> &'static str {
        use AtmCategory::*;
        match self {
            FaultSwitchedOff => "банкомат выключен",
            FaultKeysUnresponsive => "не отвечает на нажатия клавиш",
            FaultStrangeNoises => "издает неестественные звуки",
            FaultBlinking => "мигает",
            FaultBlackScreen => "черный экран более 5 секунд",
            FaultNoReceipt => "не выдает чек об операции",
            FaultCardCapturedWithMessage => "изъял карту с выведением соответствующего сообщения",
            FaultOutOfCash => "закончились деньги",
            FaultWrongAmount => "выдал неправильную сумму денег",
            FaultOther => "прочее",
            SecurityPhysicalDamage => "поврежден физически",
            SecuritySkimmer => "скиммер",
            SecurityKeypadOverlay => "накладка на клавиатуру",
            SecurityCashSlotOverlay => "накладка на разъем для выдачи денег",
            SecurityHiddenCamera => "скрытая камера",
            SecurityUnusualLook => {
                "верхняя часть/пространство сбоку экрана/картридер/клавиатура выглядят не как \
                 обычно"
            }
            SecurityForeignObjectInCardSlot => "из приемника карт виден неизвестный предмет",
            SecurityCashNotDispensedTakeMessage => {
                "не выдал деньги, при этом на экране было сообщение забрать деньги и карту"
            }
            SecurityCardCapturedWithoutMessage => "изъял карту без сообщения об изъятии",
            SecurityOther => "прочее",
        }
    }

    pub fn kind(self) -> TicketKind {
        if self.code().starts_with("fault_") {
            TicketKind::AtmFault
        } else {
            TicketKind::AtmSecurity
        }
    }

    pub fn parse(code: &str) -> Option<AtmCategory> {
        AtmCategory::ALL.into_iter().find(|c| c.code() == code)
    }
}

macro_rules! serde_as_code {
    ($ty:ty, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = String::deserialize(d)?;
                <$ty>::parse(&code)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown {}: {code}", $what)))
            }
        }
    };
}
serde_as_code!(TicketKind, "ticket kind");
serde_as_code!(AtmCategory, "ATM category");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_regulation_has_ten_categories_per_kind_ending_in_other() {
        for kind in TicketKind::ALL {
            let cats: Vec<_> = kind.categories().collect();
            assert_eq!(cats.len(), 10, "{kind:?}");
            assert_eq!(cats.last().unwrap().name_ru(), "прочее");
        }
    }

    #[test]
    fn codes_are_unique_and_round_trip() {
        let codes: HashSet<_> = AtmCategory::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), AtmCategory::ALL.len());
        for c in AtmCategory::ALL {
            assert_eq!(AtmCategory::parse(c.code()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.code()));
            assert_eq!(serde_json::from_str::<AtmCategory>(&json).unwrap(), c);
        }
        for k in TicketKind::ALL {
            assert_eq!(TicketKind::parse(k.code()), Some(k));
        }
        assert_eq!(AtmCategory::parse("fault_on_fire"), None);
        let err = serde_json::from_str::<AtmCategory>("\"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown ATM category: x"));
    }

    #[test]
    fn russian_names_are_the_regulations() {
        assert_eq!(
            AtmCategory::FaultBlackScreen.name_ru(),
            "черный экран более 5 секунд"
        );
        assert_eq!(AtmCategory::SecuritySkimmer.kind(), TicketKind::AtmSecurity);
        assert_eq!(AtmCategory::FaultWrongAmount.kind(), TicketKind::AtmFault);
    }
}
