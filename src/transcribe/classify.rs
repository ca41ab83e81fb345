//! Keyword classifier over voicemail transcripts (SPEC §2.7): suggests an ATM ticket kind
//! and category to the operator who processes the message.
//!
//! It is a suggestion, never a decision: the operator reads the transcript and files the
//! ticket. So the rules are plain, readable Russian stems rather than a trained model, and
//! the words that matched are returned so the console can show why. Transcripts come from
//! whisper on telephone audio, so matching is by word prefix (stem) over lower-cased
//! words with «ё» folded to «е», which survives case endings and most recognition slips.
//!
//! Precedence, because one message often mentions several things: a specific security
//! category beats a specific fault (a bank would rather over-report a skimmer), a specific
//! fault beats "security: other", which beats "fault: other". Within a tier the first rule
//! in the table wins, so more specific rules come first.

use crate::records::atm::AtmCategory;
use crate::records::voicemail::{SuggestedKind, Suggestion};

/// A term is satisfied by any one of its alternatives; an alternative is one stem or a
/// phrase of stems ("не выда") whose words follow each other with at most
/// [`PHRASE_GAP`] other words between.
type Term = &'static [&'static str];

/// Words allowed between the stems of a phrase ("забрал мою карту", "без всякого
/// сообщения").
const PHRASE_GAP: usize = 2;

struct Rule {
    category: AtmCategory,
    /// All of these must be present.
    all: &'static [Term],
    /// None of these may be present.
    unless: &'static [Term],
    /// The text must also say it is about an ATM ([`ATM`]).
    needs_atm: bool,
}

/// Words that put a message in an ATM's context.
const ATM: Term = &[
    "банкомат",
    "терминал",
    "atm",
    "снима",
    "снял",
    "снятие",
    "снятии",
    "картоприем",
    "картридер",
    "купюроприем",
];

const MONEY: Term = &["деньг", "денег", "налич", "купюр"];
const CARD: Term = &["карт"];
const CAPTURED: Term = &[
    "изъя",
    "зажева",
    "зажув",
    "съел",
    "проглот",
    "захват",
    "забрал карт",
    "не вернул карт",
    "не отдал карт",
    "не возвращ карт",
    "задержа карт",
    "оставил карт",
];
const NO_MESSAGE: Term = &[
    "без сообщ",
    "без уведомл",
    "без предупрежд",
    "без объяснен",
    "без всяк",
    "ничего не напис",
    "ничего не показ",
    "ничего не сообщ",
    "не было сообщ",
    "не было никак",
    "никакого сообщ",
    "никаких сообщ",
    "молча",
];
const ON_SCREEN_TAKE: Term = &[
    "сообщен",
    "надпис",
    "написано",
    "заберите",
    "забрать",
    "возьмите",
    "получите",
];
const NOT_GIVEN: Term = &[
    "не выда",
    "не выдал",
    "не дал",
    "не получил",
    "не вышл",
    "не вышли",
    "не отда",
    "не появ",
];
const OVERLAY: Term = &["наклад", "насадк", "приклеен", "наклеен", "накрыт"];
const KEYPAD: Term = &["клавиатур", "клавиш", "кноп", "пинпад", "пин пад"];

/// Security rules, most specific first (tier 1).
const SECURITY: &[Rule] = &[
    Rule {
        category: AtmCategory::SecuritySkimmer,
        all: &[&["скимм", "скимер", "считывающ"]],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityHiddenCamera,
        all: &[
            &["камер", "видеокамер", "объектив"],
            &[
                "скрыт",
                "спрята",
                "маленьк",
                "мини",
                "крошечн",
                "прикреп",
                "приклеен",
                "направлен",
                "над клавиатур",
                "банкомат",
            ],
        ],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityKeypadOverlay,
        all: &[OVERLAY, KEYPAD],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityCashSlotOverlay,
        all: &[
            OVERLAY,
            &[
                "выдач",
                "выдает",
                "диспенс",
                "шторк",
                "лоток",
                "лотке",
                "купюр",
                "денег",
                "деньг",
            ],
        ],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityForeignObjectInCardSlot,
        all: &[
            &[
                "предмет",
                "посторон",
                "застрял",
                "что то",
                "мусор",
                "провод",
                "пластин",
                "спичк",
                "клей",
                "вставлен",
                "торчит",
            ],
            &[
                "приемник карт",
                "приемнике карт",
                "приемника карт",
                "картоприем",
                "картридер",
                "щел",
                "прорез",
                "слот",
                "разъем для карт",
                "куда вставля",
            ],
        ],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityCashNotDispensedTakeMessage,
        all: &[MONEY, NOT_GIVEN, ON_SCREEN_TAKE],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityCardCapturedWithoutMessage,
        all: &[CAPTURED, CARD, NO_MESSAGE],
        unless: &[],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::SecurityPhysicalDamage,
        all: &[&[
            "поврежд",
            "разбит",
            "разбил",
            "вскрыт",
            "взлом",
            "погнут",
            "треснул",
            "трещин",
            "вмятин",
            "выломан",
            "раскуроч",
            "расколот",
        ]],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::SecurityUnusualLook,
        all: &[
            &[
                "выгляд",
                "не как обычн",
                "необычн",
                "подозрит",
                "болта",
                "шата",
                "отходит",
                "отклеива",
                "лишн",
            ],
            &[
                "картридер",
                "картоприем",
                "клавиатур",
                "экран",
                "верхн",
                "сбоку",
                "панел",
                "корпус",
                "козыр",
            ],
        ],
        unless: &[],
        needs_atm: false,
    },
];

/// Fault rules, most specific first (tier 2).
const FAULTS: &[Rule] = &[
    Rule {
        category: AtmCategory::FaultCardCapturedWithMessage,
        all: &[CAPTURED, CARD],
        unless: &[NO_MESSAGE],
        needs_atm: false,
    },
    Rule {
        category: AtmCategory::FaultWrongAmount,
        all: &[
            &[
                "неправильн",
                "неверн",
                "меньше",
                "больше",
                "недода",
                "недостач",
                "не всю",
                "не ту сумм",
                "лишн",
                "не выда",
                "не дал",
                "не вышл",
                "не отда",
            ],
            &["сумм", "деньг", "денег", "купюр", "налич", "рубл"],
        ],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultOutOfCash,
        all: &[
            &[
                "законч",
                "кончил",
                "нет денег",
                "нет наличн",
                "нет купюр",
                "не хватает наличн",
                "пустой",
                "пуст",
            ],
            MONEY,
        ],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultNoReceipt,
        all: &[
            &["чек"],
            &[
                "не выда",
                "не печат",
                "не дал",
                "нет",
                "не вышел",
                "не получил",
                "без",
            ],
        ],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultBlackScreen,
        all: &[
            &["черн", "темн", "погас", "не горит", "пустой"],
            &["экран", "дисплей", "монитор"],
        ],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultKeysUnresponsive,
        all: &[
            KEYPAD,
            &[
                "не реаг",
                "не отвеч",
                "не нажима",
                "не работа",
                "не срабатыва",
                "залип",
                "запада",
            ],
        ],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultBlinking,
        all: &[&["мига", "мигн", "мерца", "морга"]],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultStrangeNoises,
        all: &[&[
            "звук",
            "шум",
            "скрип",
            "скреж",
            "треск",
            "гудит",
            "гудел",
            "пищ",
            "жужж",
            "стуч",
            "щелка",
        ]],
        unless: &[],
        needs_atm: true,
    },
    Rule {
        category: AtmCategory::FaultSwitchedOff,
        all: &[&[
            "выключ",
            "отключ",
            "не включ",
            "обесточ",
            "не горит",
            "нет питания",
        ]],
        unless: &[&["экран", "дисплей", "монитор"]],
        needs_atm: true,
    },
];

/// "Something suspicious at an ATM" with no specific category (tier 3).
const SECURITY_OTHER: Rule = Rule {
    category: AtmCategory::SecurityOther,
    all: &[&[
        "подозрит",
        "мошен",
        "злоумышл",
        "безопасн",
        "украл",
        "похит",
        "кража",
        "копал",
        "возил",
        "установил",
    ]],
    unless: &[],
    needs_atm: true,
};

/// "An ATM does not work" with no specific category (tier 4).
const FAULT_OTHER: Rule = Rule {
    category: AtmCategory::FaultOther,
    all: &[&[
        "не работа",
        "слома",
        "неисправ",
        "завис",
        "ошибк",
        "сбой",
        "глюч",
        "проблем",
        "не могу",
        "не смог",
        "не получа",
        "не получил",
        "не выда",
    ]],
    unless: &[],
    needs_atm: true,
};

/// Suggests a ticket for a transcript.
pub fn classify(transcript: &str) -> Suggestion {
    let words = words(transcript);
    let atm = find_term(&words, ATM);
    let tiers = [
        SECURITY,
        FAULTS,
        std::slice::from_ref(&SECURITY_OTHER),
        std::slice::from_ref(&FAULT_OTHER),
    ];
    for rule in tiers.iter().flat_map(|t| t.iter()) {
        if rule.needs_atm && atm.is_none() {
            continue;
        }
        if rule.unless.iter().any(|t| find_term(&words, t).is_some()) {
            continue;
        }
        let Some(hits) = rule
            .all
            .iter()
            .map(|t| find_term(&words, t))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let mut at: Vec<usize> = hits.into_iter().flatten().collect();
        if let Some(a) = &atm {
            at.extend(a);
        }
        at.sort_unstable();
        at.dedup();
        return Suggestion {
            kind: rule.category.kind().into(),
            category: Some(rule.category),
            matched: at.into_iter().map(|i| words[i].clone()).collect(),
        };
    }
    Suggestion {
        kind: SuggestedKind::Other,
        category: None,
        matched: Vec::new(),
    }
}

/// Lower-cased words, «ё» folded to «е»; hyphens and punctuation separate words.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('ё', "е")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The word positions of the first alternative of `term` found in `words`.
fn find_term(words: &[String], term: Term) -> Option<Vec<usize>> {
    term.iter().find_map(|alt| find_phrase(words, alt))
}

/// Finds a phrase of stems: each stem must start a word within [`PHRASE_GAP`] words after
/// the previous stem's word.
fn find_phrase(words: &[String], phrase: &str) -> Option<Vec<usize>> {
    let stems: Vec<&str> = phrase.split(' ').collect();
    'start: for first in 0..words.len() {
        if !words[first].starts_with(stems[0]) {
            continue;
        }
        let mut at = vec![first];
        for stem in &stems[1..] {
            let prev = *at.last().unwrap();
            let end = (prev + 2 + PHRASE_GAP).min(words.len());
            match (prev + 1..end).find(|&i| words[i].starts_with(stem)) {
                Some(i) => at.push(i),
                None => continue 'start,
            }
        }
        return Some(at);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use AtmCategory::*;

    /// Example voicemails written for the purpose, the way callers speak (and the way
    /// whisper writes them down), with the category an operator would file.
    const EXAMPLES: &[(&str, Option<AtmCategory>)] = &[
        // Faults (§6.7.2), every category.
        (
            "Здравствуйте, банкомат на улице Ленина выключен, ничего не горит.",
            Some(FaultSwitchedOff),
        ),
        (
            "Терминал у метро отключился и не включается уже час.",
            Some(FaultSwitchedOff),
        ),
        (
            "Банкомат не реагирует на нажатие кнопок, ничего не могу сделать.",
            Some(FaultKeysUnresponsive),
        ),
        (
            "В банкомате клавиши не работают, нажимаю и ничего.",
            Some(FaultKeysUnresponsive),
        ),
        (
            "Банкомат издаёт какие-то странные звуки, скрежет внутри.",
            Some(FaultStrangeNoises),
        ),
        (
            "Ваш банкомат очень громко гудит и щелкает.",
            Some(FaultStrangeNoises),
        ),
        (
            "Банкомат всё время мигает, экран моргает.",
            Some(FaultBlinking),
        ),
        (
            "У банкомата черный экран уже минут десять.",
            Some(FaultBlackScreen),
        ),
        (
            "Подошла к терминалу, а экран погас и не загорается.",
            Some(FaultBlackScreen),
        ),
        ("Банкомат не выдал чек об операции.", Some(FaultNoReceipt)),
        ("Снял деньги, а чек не печатает.", Some(FaultNoReceipt)),
        (
            "Банкомат изъял карту, на экране было сообщение, что карта задержана.",
            Some(FaultCardCapturedWithMessage),
        ),
        (
            "Банкомат съел мою карту, написал обратитесь в банк.",
            Some(FaultCardCapturedWithMessage),
        ),
        (
            "В банкомате закончились деньги, снять не получается.",
            Some(FaultOutOfCash),
        ),
        (
            "В терминале нет наличных уже второй день.",
            Some(FaultOutOfCash),
        ),
        (
            "Банкомат выдал неправильную сумму денег.",
            Some(FaultWrongAmount),
        ),
        (
            "Снимала пять тысяч, а выдали меньше денег, не хватает тысячи рублей.",
            Some(FaultWrongAmount),
        ),
        (
            "Банкомат деньги не выдал, а со счёта списал.",
            Some(FaultWrongAmount),
        ),
        ("Банкомат сломался, не работает совсем.", Some(FaultOther)),
        (
            "У банкомата какая-то ошибка, зависает на операции.",
            Some(FaultOther),
        ),
        // Security events (§6.7.3), every category.
        (
            "Банкомат повреждён, кто-то разбил стекло на корпусе.",
            Some(SecurityPhysicalDamage),
        ),
        (
            "На банкомате видны следы взлома.",
            Some(SecurityPhysicalDamage),
        ),
        (
            "Мне кажется, на банкомате стоит скиммер.",
            Some(SecuritySkimmer),
        ),
        (
            "Видела на картоприёмнике считывающее устройство.",
            Some(SecuritySkimmer),
        ),
        (
            "На клавиатуру банкомата приклеена какая-то накладка.",
            Some(SecurityKeypadOverlay),
        ),
        (
            "На кнопках банкомата накладка, она отходит.",
            Some(SecurityKeypadOverlay),
        ),
        (
            "На разъём для выдачи денег установлена накладка.",
            Some(SecurityCashSlotOverlay),
        ),
        (
            "Лоток, откуда выходят купюры, накрыт пластиковой насадкой.",
            Some(SecurityCashSlotOverlay),
        ),
        (
            "Над клавиатурой банкомата маленькая скрытая камера.",
            Some(SecurityHiddenCamera),
        ),
        (
            "На банкомате приклеена камера, направленная на кнопки.",
            Some(SecurityHiddenCamera),
        ),
        (
            "Верхняя часть банкомата выглядит не как обычно.",
            Some(SecurityUnusualLook),
        ),
        (
            "Картридер у банкомата какой-то необычный, шатается.",
            Some(SecurityUnusualLook),
        ),
        (
            "Из приёмника карт торчит какой-то посторонний предмет.",
            Some(SecurityForeignObjectInCardSlot),
        ),
        (
            "В щели для карты банкомата застрял кусок пластика.",
            Some(SecurityForeignObjectInCardSlot),
        ),
        (
            "Банкомат не выдал деньги, а на экране было сообщение заберите деньги и карту.",
            Some(SecurityCashNotDispensedTakeMessage),
        ),
        (
            "Наличные не вышли, хотя надпись просила забрать деньги.",
            Some(SecurityCashNotDispensedTakeMessage),
        ),
        (
            "Банкомат изъял карту без сообщения об изъятии.",
            Some(SecurityCardCapturedWithoutMessage),
        ),
        (
            "Банкомат забрал мою карту и ничего не написал на экране.",
            Some(SecurityCardCapturedWithoutMessage),
        ),
        (
            "Возле банкомата крутились подозрительные люди, что-то установили.",
            Some(SecurityOther),
        ),
        (
            "Думаю, с банкоматом орудуют мошенники.",
            Some(SecurityOther),
        ),
        // Precedence: a security sign beats a fault in the same message.
        (
            "Банкомат не работает, а на клавиатуре какая-то накладка.",
            Some(SecurityKeypadOverlay),
        ),
        (
            "Экран банкомата черный и рядом спрятана камера.",
            Some(SecurityHiddenCamera),
        ),
        // Not about an ATM.
        (
            "Здравствуйте, перезвоните мне, пожалуйста, по поводу кредита.",
            None,
        ),
        ("Хочу узнать остаток по карте.", None),
        ("Моя карта заблокирована, не могу оплатить покупку.", None),
        ("Подскажите адрес ближайшего банкомата.", None),
        (
            "Мне звонили мошенники и представлялись сотрудниками банка.",
            None,
        ),
        ("Не приходят смс-уведомления об операциях.", None),
        ("Хочу оформить вклад, перезвоните после обеда.", None),
        ("В отделении не работает камера хранения.", None),
        ("", None),
    ];

    #[test]
    fn the_example_table_is_classified_as_an_operator_would() {
        assert!(EXAMPLES.len() >= 40);
        let mut wrong = Vec::new();
        for (text, want) in EXAMPLES {
            let got = classify(text);
            if got.category != *want {
                wrong.push(format!("{text:?}: want {want:?}, got {got:?}"));
            }
            let kind = want.map_or(SuggestedKind::Other, |c| c.kind().into());
            assert_eq!(got.kind, kind, "{text}");
            assert_eq!(got.matched.is_empty(), want.is_none(), "{text}: {got:?}");
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_table_covers_every_category_and_negatives() {
        for c in AtmCategory::ALL {
            assert!(
                EXAMPLES.iter().any(|(_, w)| *w == Some(c)),
                "no example for {c:?}"
            );
        }
        assert!(EXAMPLES.iter().filter(|(_, w)| w.is_none()).count() >= 5);
    }

    #[test]
    fn matched_words_are_the_transcripts_own_in_order() {
        let s = classify("Банкомат выдал НЕПРАВИЛЬНУЮ сумму денег");
        assert_eq!(s.kind, SuggestedKind::AtmFault);
        assert_eq!(s.category, Some(FaultWrongAmount));
        assert_eq!(s.matched, ["банкомат", "неправильную", "сумму"]);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "atm_fault");
        assert_eq!(json["category"], "fault_wrong_amount");
    }

    #[test]
    fn yo_is_folded_and_phrases_allow_a_few_words_between() {
        assert_eq!(
            classify("Банкомат изъял карту без всякого предупреждения").category,
            Some(SecurityCardCapturedWithoutMessage)
        );
        assert_eq!(
            classify("ТЕРМИНАЛ ЗАКОНЧИЛИСЬ ДЕНЬГИ").category,
            Some(FaultOutOfCash)
        );
        assert_eq!(
            classify("банкомат повреждён").category,
            Some(SecurityPhysicalDamage)
        );
    }
}
