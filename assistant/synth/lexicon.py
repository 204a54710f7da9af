"""Word lists for the request templates, and numbers written as words.

Everything a transcript can contain is lowercase words (the TTS reads them; WER counts them).
PERSONAL_NAMES / PERSONAL_PLACES are real but uncommon, pronounceable names kept out of all base
training: they play the user's contacts and places, which personalization has to learn.
"""

from __future__ import annotations

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0..999999 as words without hyphens or "and": 125 -> "one hundred twenty five"."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words covers 0..999999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def decimal_words(x: float, places: int = 1) -> str:
    """3.1 -> "three point one"; whole values drop the point: 4.0 -> "four"."""
    x = round(x, places)
    whole = int(x)
    frac = f"{x:.{places}f}".split(".")[1].rstrip("0")
    text = number_words(whole)
    return text + (" point " + " ".join(_ONES[int(d)] for d in frac) if frac else "")


_ORD_SPECIAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def ordinal_words(n: int) -> str:
    """21 -> "twenty first", 12 -> "twelfth", 30 -> "thirtieth"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORD_SPECIAL:
        last = _ORD_SPECIAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join(words[:-1] + [last])


FIRST_NAMES = (
    "james john robert michael david william richard joseph thomas charles daniel matthew "
    "anthony mark paul steven andrew kevin brian george peter ryan jack henry sam ben tom "
    "mary patricia jennifer linda elizabeth susan jessica sarah karen lisa nancy emma "
    "emily anna laura rachel hannah grace olivia sophie lucy kate amy helen julia alice "
    "chloe megan rose claire jane maria nina"
).split()

CITIES = (
    "london", "paris", "berlin", "madrid", "rome", "new york", "chicago", "boston", "seattle",
    "toronto", "tokyo", "sydney", "dublin", "edinburgh", "manchester", "glasgow", "amsterdam",
    "vienna", "lisbon", "oslo", "stockholm", "copenhagen", "prague", "athens", "cairo",
    "mumbai", "delhi", "beijing", "seoul", "bangkok", "miami", "denver", "dallas", "houston",
    "san francisco", "los angeles", "washington", "atlanta", "montreal", "vancouver",
)

# Real, uncommon, and pronounceable by a rule-based TTS; none shares a word with the lists above.
PERSONAL_NAMES = (
    "leocadia", "bartholomew", "thaddeus", "ximena", "perpetua", "evander", "isolde",
    "cornelius", "wilhelmina", "ignatius", "philippa", "lysander", "seraphina", "barnaby",
    "ottoline", "peregrine",
)
PERSONAL_PLACES = (
    "tobermory", "ullapool", "penzance", "tintagel", "ushuaia", "valparaiso", "trondheim",
    "kalamazoo",
)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
HOLIDAYS = ("christmas", "christmas eve", "new year's day", "new year's eve", "easter",
            "halloween", "thanksgiving", "valentine's day", "mother's day", "father's day",
            "boxing day", "labor day", "independence day", "saint patrick's day")

ARTISTS = ("the beatles", "taylor swift", "adele", "queen", "coldplay", "abba", "elvis presley",
           "bob marley", "miles davis", "norah jones", "david bowie", "ed sheeran",
           "the rolling stones", "johnny cash", "dolly parton", "frank sinatra", "stevie wonder",
           "bruce springsteen", "fleetwood mac", "pink floyd", "radiohead", "nirvana", "madonna",
           "bach", "mozart", "beethoven", "louis armstrong", "ella fitzgerald", "billie holiday",
           "the eagles")
GENRES = ("jazz", "rock", "pop", "classical", "blues", "country", "reggae", "hip hop", "folk",
          "soul", "disco", "metal", "punk", "funk", "techno", "ambient", "gospel", "piano",
          "indie", "lounge")
PLAYLISTS = ("workout", "chill", "party", "road trip", "dinner", "focus", "sleep", "morning",
             "running", "study", "summer", "rainy day", "cooking", "relaxing", "throwback")

ROOMS = ("kitchen", "living room", "bedroom", "bathroom", "office", "hallway", "garage",
         "dining room", "kids' room", "basement", "guest room", "attic", "nursery", "porch",
         "study", "den", "laundry room", "upstairs bathroom")
SWITCHABLE = ("lights", "lamp", "fan", "tv", "heater", "radio", "air conditioning",
              "ceiling light", "floor lamp", "speaker", "coffee machine", "humidifier",
              "dehumidifier", "night light")
DIMMABLE = ("lights", "lamp", "ceiling light", "floor lamp", "night light")
OPENABLE = ("blinds", "curtains", "shutters", "window", "garage door")

TIMER_LABELS = ("pasta", "eggs", "rice", "laundry", "tea", "oven", "pizza", "cake",
                "bread", "workout", "nap", "break", "homework", "potatoes", "steak")

TASKS = ("buy milk", "call the dentist", "take out the trash", "water the plants",
         "pick up the kids", "pay the electricity bill", "feed the cat", "walk the dog",
         "take my medicine", "book a table for dinner", "renew my passport", "check the mail",
         "charge my phone", "lock the back door", "buy bread", "return the library books",
         "send the report", "stretch", "drink some water", "pick up my prescription",
         "clean the fridge", "book a haircut", "defrost the chicken", "back up my laptop",
         "pack my gym bag", "move the car", "order more coffee", "buy a birthday card",
         "change the bed sheets", "pay the rent", "fill up the car", "mow the lawn",
         "bring an umbrella", "call my mother", "finish the slides", "wash the car",
         "cancel the gym membership", "put the bins out", "buy batteries", "call the bank")

MESSAGE_BODIES = ("i'm running late", "i'll be home at six", "dinner is ready",
                  "can you call me back", "i'm on my way", "see you soon", "happy birthday",
                  "thanks for today", "i'm outside", "the meeting is moved to friday",
                  "don't forget the tickets", "we need more milk", "call me when you land",
                  "i'll pick you up at seven", "good luck today", "i miss you",
                  "running ten minutes late", "where are you", "let's have lunch tomorrow",
                  "the door is open", "i left the keys under the mat", "love you",
                  "are we still on for tonight", "i'm stuck in traffic", "sorry i missed your call")

TIME_PHRASES = ("tonight", "tomorrow", "tomorrow morning", "tomorrow evening", "this afternoon",
                "this evening", "later today", "next week", "on the weekend", "in an hour",
                "after lunch", "before bed", "when i get home", "first thing tomorrow")
