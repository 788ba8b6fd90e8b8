#!/usr/bin/env python3
"""Generate the embedded sample feed set (search-server/feeds/*.xml).

The search server runs offline by default over these twelve RSS 2.0 documents: CNN, BBC and
NYT, four feeds each, shaped like the real ones (CDATA, entities, HTML inside descriptions,
dc: and media: namespaces) but written for this project from the word banks below. The output
is deterministic (fixed seeds, fixed dates), so re-running this script reproduces the committed
files byte for byte. Run it from anywhere: `python3 search-server/feeds/generate.py`.

The mix is tuned so that the tutorial's term "house" hits about 30 items across all sources
(a result page of about 23 KB, as the real feeds give) and "market" and "storm" hit in every source; the script checks
those counts and fails if a change breaks them.
"""

import datetime
import html
import os
import random
import re
import sys

OUT = os.path.dirname(os.path.abspath(__file__))

# (source, file stem, channel title, site, section path, item count, items about "house")
FEEDS = [
    ("cnn", "cnn-top", "CNN.com - RSS Channel - Top Stories", "https://edition.cnn.com", "top", 48, 3),
    ("cnn", "cnn-world", "CNN.com - RSS Channel - World", "https://edition.cnn.com", "world", 55, 2),
    ("cnn", "cnn-us", "CNN.com - RSS Channel - US", "https://edition.cnn.com", "us", 50, 4),
    ("cnn", "cnn-politics", "CNN.com - RSS Channel - Politics", "https://edition.cnn.com", "politics", 45, 4),
    ("bbc", "bbc-news", "BBC News", "https://www.bbc.co.uk", "news", 60, 2),
    ("bbc", "bbc-world", "BBC News - World", "https://www.bbc.co.uk", "world", 52, 2),
    ("bbc", "bbc-uk", "BBC News - UK", "https://www.bbc.co.uk", "uk", 47, 3),
    ("bbc", "bbc-business", "BBC News - Business", "https://www.bbc.co.uk", "business", 40, 2),
    ("nyt", "nyt-home", "NYT > Top Stories", "https://www.nytimes.com", "home", 55, 3),
    ("nyt", "nyt-world", "NYT > World News", "https://www.nytimes.com", "world", 50, 2),
    ("nyt", "nyt-us", "NYT > U.S. News", "https://www.nytimes.com", "us", 48, 2),
    ("nyt", "nyt-business", "NYT > Business", "https://www.nytimes.com", "business", 50, 1),
]

CITIES = ["Lisbon", "Osaka", "Denver", "Nairobi", "Manchester", "Quebec City", "Tucson", "Gdansk",
          "Valparaiso", "Perth", "Bergen", "Cork", "Savannah", "Hanoi", "Accra", "Leeds",
          "Montevideo", "Tbilisi", "Dundee", "Boise", "Porto", "Kyoto", "Halifax", "Omaha"]
COUNTRIES = ["Portugal", "Japan", "Kenya", "Poland", "Chile", "Norway", "Ireland", "Vietnam",
             "Ghana", "Uruguay", "Georgia", "Canada", "Peru", "Finland", "Morocco", "Malaysia"]
PEOPLE = ["Maria Okafor", "Daniel Reyes", "Priya Natarajan", "Tomas Lindqvist", "Aisha Bello",
          "Hugo Marchetti", "Grace O'Neill", "Kenji Watanabe", "Sofia Alvarez", "Liam Brennan",
          "Nadia Haddad", "Oliver Kwan", "Elena Petrova", "Samuel Adeyemi", "Chloe Dubois"]
ROLES = ["the governor", "the finance minister", "the mayor", "a senior senator",
         "the central bank chief", "the health secretary", "the opposition leader",
         "the prime minister", "the foreign minister", "the union leader"]
ORGS = ["Northwind Energy", "Helios Airlines", "Bluebay Foods", "Corvid Semiconductors",
        "Atlas Rail", "Meridian Bank", "Kestrel Motors", "Lumen Pharma", "Tidewater Shipping",
        "Quarry & Sons", "Silverline Telecom", "Orchard Retail"]
STORMS = ["Storm Ingrid", "Tropical Storm Lorena", "Storm Bram", "Hurricane Odette",
          "Storm Caoimhe", "Typhoon Haima", "Storm Dara", "Winter Storm Ulla"]
BILLS = ["farm", "border security", "child care", "broadband", "water safety", "pension",
         "rail funding", "privacy", "energy efficiency", "veterans health"]
TEAMS = ["Rovers", "Harbor City FC", "the Comets", "Northern Lights", "the Falcons", "United"]

TOPICS = {
    "politics": [
        ("Senate stalls on {bill} bill as deadline nears",
         "Negotiators from both parties met late into the night, but {role} said the {bill} bill "
         "still lacked the votes to pass before the recess."),
        ("{person} launches campaign with promise on {bill} reform",
         "Speaking to supporters in {city}, {person} said the {bill} system had failed working "
         "families & pledged to rewrite it within a year."),
        ("Voters in {city} head to the polls in tight mayoral race",
         "Turnout was brisk in the early hours as residents weighed transit, crime and school "
         "budgets in a contest that polls show is \"too close to call.\""),
        ("Court blocks new voting rules ahead of election",
         "A federal judge ruled that the state's last-minute changes to mail ballots would "
         "confuse voters and ordered officials to restore the previous rules."),
        ("Budget talks resume after weekend of brinkmanship",
         "{role} said a deal was within reach, though disagreements over defense spending and "
         "tax credits for families remained unresolved on Monday."),
    ],
    "world": [
        ("{country} and neighbors sign water-sharing pact",
         "The agreement, reached after two years of talks, sets seasonal limits on river "
         "withdrawals and creates a joint commission to settle disputes."),
        ("Protesters fill streets of {city} over fuel prices",
         "Tens of thousands marched through the capital for a third day, demanding that the "
         "government reverse a subsidy cut that doubled the price of diesel."),
        ("Earthquake of magnitude {mag} strikes off coast of {country}",
         "No tsunami warning was issued, officials said, but buildings swayed in {city} and "
         "several roads were closed while engineers checked bridges."),
        ("{country} election: what to know before Sunday's vote",
         "Three parties are polling within a few points of each other, and analysts expect weeks "
         "of coalition talks once the results are in."),
        ("Peace talks resume in {city} with cautious optimism",
         "Envoys said a ceasefire framework was \"closer than at any point this year,\" but warned "
         "that prisoner exchanges remained the hardest issue."),
    ],
    "weather": [
        ("{storm} brings flooding and power cuts to {city}",
         "Forecasters said {storm} would bring gusts of up to {num} mph overnight, with more than "
         "{num2},000 homes already without power and rail services suspended."),
        ("Thousands evacuated as {storm} nears the coast of {country}",
         "Emergency shelters opened in schools and sports halls as {storm} strengthened, and "
         "officials urged residents of low-lying areas to leave before nightfall."),
        ("Storm warnings issued for the weekend across the north",
         "Amber warnings for wind and rain cover much of the region, with the storm expected to "
         "peak on Saturday afternoon. Ferries have been cancelled."),
        ("After the storm, {city} counts the cost of a record downpour",
         "Insurers estimate claims in the hundreds of millions after {num} millimetres of rain "
         "fell in a day, overwhelming drains that were built for a smaller town."),
    ],
    "business": [
        ("Stock market rallies as inflation cools to {pct}%",
         "The S&P 500 rose {pct2}% and bond yields fell after figures showed prices rising more "
         "slowly than economists had expected, raising hopes of a rate cut."),
        ("{org} shares slide after profit warning",
         "{org} said demand had weakened in the third quarter, sending its shares down {pct2}% "
         "and dragging the wider market lower in early trading."),
        ("Oil prices climb on supply fears; markets in Asia mixed",
         "Brent crude rose above ${num} a barrel after producers signalled further cuts, while "
         "stock markets in Tokyo and Hong Kong ended the day little changed."),
        ("Labor market stays tight as employers add {num2},000 jobs",
         "Wage growth slowed slightly, but unemployment held near a historic low, a sign that the "
         "jobs market is cooling only gradually."),
        ("{org} agrees takeover of rival in $ {num} billion deal",
         "The deal, which still needs approval from regulators, would create the largest company "
         "of its kind in the market and could lead to job cuts."),
        ("Central bank holds rates, warns on market volatility",
         "{role} said officials were watching financial markets closely and stood ready to act "
         "if turmoil threatened the flow of credit to businesses."),
    ],
    "science": [
        ("Astronomers spot water vapor on distant planet",
         "The telescope observations, published on Wednesday, suggest an atmosphere rich in "
         "steam around a world about {num} light-years from Earth."),
        ("New antibiotic found in soil sample from {country}",
         "Researchers said the compound killed drug-resistant bacteria in laboratory tests, "
         "though human trials are still years away."),
        ("Glacier retreat in {country} faster than expected, study says",
         "Satellite images show the ice losing about {num} meters a year, a pace scientists "
         "linked to warmer summers and less winter snow."),
    ],
    "health": [
        ("Hospitals in {city} brace for winter flu surge",
         "Doctors urged older people to get vaccinated now, as emergency departments reported "
         "waiting times of more than {num} hours last week."),
        ("Study links daily walking to longer life",
         "Adults who walked about {num2},000 steps a day had a markedly lower risk of early death, "
         "according to research that followed volunteers for a decade."),
    ],
    "sport": [
        ("{team} clinch title with late winner in {city}",
         "A header {num} minutes in sealed the championship, sparking celebrations that "
         "went on long into the night across the city."),
        ("Marathon in {city} ends in photo finish",
         "The two leaders crossed the line together after {num} kilometres, and judges needed "
         "several minutes to name the winner."),
    ],
    "culture": [
        ("Festival in {city} draws record crowds",
         "Organizers said more than {num2},000 people attended over the weekend, with "
         "performers from {country} closing the main stage on Sunday."),
        ("Museum returns artifacts to {country} after decades-long campaign",
         "The collection, taken during the colonial era, will go on display in {city} next "
         "spring, officials said."),
    ],
}

# The only templates that mention "house"; each feed uses exactly its quota of them.
HOUSE = [
    ("House passes {bill} bill after late-night vote",
     "The measure cleared the House by a narrow margin and now goes to the Senate, where {role} "
     "said it faces an uncertain future."),
    ("White House defends {bill} plan as critics push back",
     "Officials at the White House said the {bill} plan would pay for itself within a decade, "
     "a claim that independent analysts disputed."),
    ("House prices in {city} have risen for {num2} months in a row",
     "Average house prices climbed again as buyers competed for a shrinking number of homes, "
     "though agents said the pace was starting to slow."),
    ("Fire destroys historic house in {city}",
     "Firefighters battled the blaze for hours, but the 18th-century house, a local landmark, "
     "could not be saved. No one was hurt."),
    ("Opera house in {city} reopens after restoration",
     "The opera house welcomed its first audience in four years on Friday, with restored "
     "ceilings and a new stage that engineers say will last a century."),
    ("Speaker of the House faces revolt over {bill} deal",
     "A group of lawmakers threatened to force a vote on the speaker's future, arguing that the "
     "{bill} deal gave away too much."),
    ("Inside the tiny house movement in {country}",
     "Rising rents have pushed young buyers toward homes smaller than a parking space, and "
     "planners are rewriting rules to keep up."),
]

SECTION_TOPICS = {
    "top": ["politics", "world", "weather", "business", "health", "culture", "science"],
    "world": ["world", "world", "weather", "business", "science", "culture"],
    "us": ["politics", "weather", "health", "sport", "business", "science"],
    "politics": ["politics", "politics", "business", "world"],
    "news": ["politics", "world", "weather", "health", "sport", "culture", "business"],
    "uk": ["politics", "weather", "health", "sport", "culture", "business"],
    "business": ["business", "business", "business", "weather", "politics"],
    "home": ["politics", "world", "weather", "business", "science", "culture", "health"],
}

EXTRA = [
    "Officials said more details would be released later this week.",
    "The story is developing and will be updated.",
    "Local reporters said the mood was tense but calm by evening.",
    "Critics called the move overdue; supporters said it was \u201ca first step.\u201d",
    "It is the latest in a series of similar cases this year.",
    "Analysts cautioned against reading too much into a single month\u2019s figures.",
    "A spokesperson declined to comment further, citing an ongoing review of the matter.",
    "Residents interviewed on Tuesday said they had been expecting the decision for weeks.",
    "Earlier coverage of the story drew thousands of comments from readers across the region.",
    "The figures have not been independently verified and may be revised in the coming days.",
    "Several people familiar with the discussions spoke on condition of anonymity.",
    "A full statement is expected after a meeting scheduled for the end of the month.",
]


def fill(rng, text):
    values = {
        "city": rng.choice(CITIES), "country": rng.choice(COUNTRIES),
        "person": rng.choice(PEOPLE), "role": rng.choice(ROLES), "org": rng.choice(ORGS),
        "storm": rng.choice(STORMS), "bill": rng.choice(BILLS), "team": rng.choice(TEAMS),
        "num": rng.randint(12, 95), "num2": rng.randint(2, 60), "pct": rng.randint(2, 6),
        "pct2": rng.randint(1, 9), "mag": "%d.%d" % (rng.randint(5, 7), rng.randint(0, 9)),
    }
    return text.format(**values)


def slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def items_for(rng, section, count, house_count):
    positions = set(rng.sample(range(count), house_count))
    topics = SECTION_TOPICS[section]
    items = []
    for i in range(count):
        if i in positions:
            title_t, body_t = rng.choice(HOUSE)
        else:
            title_t, body_t = rng.choice(TOPICS[rng.choice(topics)])
        # Fill title and body with one set of values so they tell the same story.
        seed = rng.random()
        title = fill(random.Random(seed), title_t)
        body = fill(random.Random(seed), body_t)
        extra = " ".join(rng.sample(EXTRA, rng.randint(3, 5)))
        items.append((title, body, extra))
    return items


def rfc822(when):
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def esc(text):
    return html.escape(text, quote=False)


def cnn_item(site, section, n, when, title, body, extra):
    link = "%s/2026/11/%02d/%s/%s/index.html" % (site, when.day, section, slug(title))
    img = "https://cdn.cnn.com/cnnnext/dam/assets/2611%02d-%s-super-169.jpg" % (n, slug(title)[:20])
    # CNN puts HTML in CDATA: a paragraph, a link, and an image; one in five uses the older,
    # entity-escaped form instead.
    if n % 5 == 0:
        desc = "<description>%s</description>" % esc(
            '<p>%s %s</p><img src="%s" width="1" height="1" alt=""/>' % (body, extra, img))
    else:
        desc = ('<description><![CDATA[<p>%s</p><p>%s <a href="%s">Read more</a></p>]]>'
                "</description>" % (body, extra, link))
    return "\n".join([
        "    <item>",
        "      <title><![CDATA[%s]]></title>" % title,
        "      " + desc,
        "      <link>%s</link>" % link,
        '      <guid isPermaLink="true">%s</guid>' % link,
        "      <pubDate>%s</pubDate>" % rfc822(when),
        "      <media:group>",
        '        <media:content medium="image" url="%s" height="619" width="1100" type="image/jpeg"/>' % img,
        "      </media:group>",
        "    </item>",
    ])


def bbc_item(site, section, n, when, title, body, extra):
    link = "%s/news/articles/c%07dx%02do" % (site.replace("www.bbc.co.uk", "www.bbc.com"), 4200000 + n * 37, n)
    thumb = "https://ichef.bbci.co.uk/ace/standard/240/cpsprodpb/%04x/live/%s.jpg" % (n * 131, slug(title)[:16])
    return "\n".join([
        "    <item>",
        "      <title><![CDATA[%s]]></title>" % title,
        "      <description><![CDATA[%s %s]]></description>" % (body, extra),
        "      <link>%s?at_medium=RSS&amp;at_campaign=rss</link>" % link,
        '      <guid isPermaLink="false">%s#%d</guid>' % (link, n % 3),
        "      <pubDate>%s</pubDate>" % rfc822(when),
        '      <media:thumbnail width="240" height="135" url="%s"/>' % thumb,
        "    </item>",
    ])


def nyt_text(text):
    # The Times escapes everything as entities, with typographic apostrophes as numeric refs.
    return esc(text).replace("'", "&#8217;").replace("\u2019", "&#8217;") \
        .replace("\u201c", "&#8220;").replace("\u201d", "&#8221;")


def nyt_item(site, section, n, when, title, body, extra, rng):
    link = "%s/2026/11/%02d/%s/%s.html" % (site, when.day, section, slug(title))
    img = "https://static01.nyt.com/images/2026/11/%02d/multimedia/%s-mediumSquareAt3X.jpg" % (when.day, slug(title)[:24])
    author = rng.choice(PEOPLE)
    lines = [
        "    <item>",
        "      <title>%s</title>" % nyt_text(title),
        "      <link>%s</link>" % link,
        '      <guid isPermaLink="true">%s</guid>' % link,
        '      <atom:link href="%s" rel="standout"/>' % link,
        "      <description>%s</description>" % nyt_text(body + " " + extra),
        "      <dc:creator>%s</dc:creator>" % nyt_text(author),
        "      <pubDate>%s</pubDate>" % rfc822(when),
        '      <category domain="http://www.nytimes.com/namespaces/keywords/des">%s</category>' % section.title(),
        '      <media:content height="1800" width="1800" url="%s" medium="image"/>' % img,
        "      <media:credit>%s for The New York Times</media:credit>" % nyt_text(rng.choice(PEOPLE)),
        "      <media:description>%s</media:description>" % nyt_text("A scene in " + rng.choice(CITIES) + "."),
        "    </item>",
    ]
    return "\n".join(lines)


def document(source, stem, channel, site, section, count, house_count, seed):
    rng = random.Random(seed)
    items = items_for(rng, section, count, house_count)
    when = datetime.datetime(2026, 11, 20, 18, 0, 0)
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    if source == "cnn":
        out.append('<rss xmlns:dc="http://purl.org/dc/elements/1.1/" '
                   'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
                   'xmlns:atom="http://www.w3.org/2005/Atom" '
                   'xmlns:media="http://search.yahoo.com/mrss/" version="2.0">')
    elif source == "bbc":
        out.append('<rss xmlns:dc="http://purl.org/dc/elements/1.1/" '
                   'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
                   'xmlns:atom="http://www.w3.org/2005/Atom" version="2.0" '
                   'xmlns:media="http://search.yahoo.com/mrss/">')
    else:
        out.append('<rss xmlns:dc="http://purl.org/dc/elements/1.1/" '
                   'xmlns:atom="http://www.w3.org/2005/Atom" '
                   'xmlns:media="http://search.yahoo.com/mrss/" version="2.0">')
    out += [
        "  <channel>",
        "    <title><![CDATA[%s]]></title>" % channel if source != "nyt" else "    <title>%s</title>" % esc(channel),
        "    <description>Sample %s feed written for the search-server demo (not real news).</description>" % esc(channel),
        "    <link>%s/%s</link>" % (site, section),
        "    <generator>search-server/feeds/generate.py</generator>",
        "    <lastBuildDate>%s</lastBuildDate>" % rfc822(when),
        "    <language>%s</language>" % ("en-gb" if source == "bbc" else "en-us"),
        "    <ttl>15</ttl>",
    ]
    for n, (title, body, extra) in enumerate(items):
        when = when - datetime.timedelta(minutes=rng.randint(7, 49))
        if source == "cnn":
            out.append(cnn_item(site, section, n, when, title, body, extra))
        elif source == "bbc":
            out.append(bbc_item(site, section, n, when, title, body, extra))
        else:
            out.append(nyt_item(site, section, n, when, title, body, extra, rng))
    out += ["  </channel>", "</rss>", ""]
    return "\n".join(out), items


def main():
    totals = {"house": 0, "market": 0, "storm": 0}
    per_source = {}
    item_total = 0
    for index, (source, stem, channel, site, section, count, house_count) in enumerate(FEEDS):
        text, items = document(source, stem, channel, site, section, count, house_count, 1000 + index)
        with open(os.path.join(OUT, stem + ".xml"), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        item_total += len(items)
        for title, body, extra in items:
            folded = (title + "\n" + body + " " + extra).lower()
            for term in totals:
                if term in folded:
                    totals[term] += 1
                    per_source.setdefault((source, term), 0)
                    per_source[(source, term)] += 1
    print("items: %d, hits: %s" % (item_total, totals))
    # The demo and the benchmarks depend on these shapes; fail loudly if an edit breaks them.
    if not 550 <= item_total <= 650:
        sys.exit("item total %d is outside 550..650" % item_total)
    if not 26 <= totals["house"] <= 34:
        sys.exit("'house' hits %d items, expected about 30" % totals["house"])
    for source in ("cnn", "bbc", "nyt"):
        for term in ("house", "market", "storm"):
            if per_source.get((source, term), 0) == 0:
                sys.exit("'%s' does not hit any %s item" % (term, source))


if __name__ == "__main__":
    main()
