"""Word lists for the request templates (numbers as words: ``assistant.skills.words``).

Everything a transcript can contain is lowercase words (the TTS reads them; WER counts them).
PERSONAL_NAMES / PERSONAL_PLACES are real but uncommon, pronounceable names kept out of all base
training: they play the user's contacts and places, which personalization has to learn.
"""

from __future__ import annotations

from assistant.skills.calendar import MONTH_DAYS, MONTHS, WEEKDAYS  # noqa: F401 - the template word lists
from assistant.skills.words import decimal_words, number_words, ordinal_words  # noqa: F401 - as above

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
