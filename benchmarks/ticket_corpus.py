"""Word lists and generators for the ticket benchmarks: subjects, descriptions, comments.

Shared by `seed_tickets.py` (1M tickets through COPY) and `bench_tickets.py` (request bodies,
search terms). Everything is built from fixed lists with a caller-supplied `random.Random`, so a
seed reproduces the same text. The vocabulary is deliberately mixed: some words are in a few
percent of all tickets (`printer`, `password`, `vpn`), some in about 0.1 % (`kerberos`,
`defibrillator`), and host names / asset tags make many near-unique lexemes, as real desks have.
"""

from __future__ import annotations

import html
import random

FIRST_NAMES = (
    "Ada Alan Alice Amir Ana Anna Ben Carla Chen Chloe Dana David Diego Elena Eli Emma Erik Eva "
    "Farah Felix Grace Hana Hugo Ines Ivan Jana Jonas Julia Kai Karin Lars Lea Leo Lina Luca "
    "Maya Mia Milan Nadia Nina Noah Olga Omar Paul Petra Priya Rafael Rosa Sami Sara Sofia Tariq "
    "Tom Uma Vera Victor Yara Yusuf Zoe"
).split()
LAST_NAMES = (
    "Abbott Baker Becker Costa Dubois Eriksen Fischer Garcia Hansen Ito Jansen Kowalski Larsen "
    "Lopez Meyer Moreau Nakamura Novak Okafor Olsen Patel Quinn Rossi Sato Schmidt Silva Smith "
    "Tanaka Urban Vargas Wagner Weber Xu Yilmaz Zimmermann"
).split()

DEVICES = (
    "laptop",
    "desktop",
    "monitor",
    "docking station",
    "keyboard",
    "mouse",
    "headset",
    "printer",
    "scanner",
    "phone",
    "tablet",
    "webcam",
    "projector",
    "badge reader",
    "label printer",
    "barcode scanner",
)
APPS = (
    "Outlook",
    "Excel",
    "Word",
    "PowerPoint",
    "Teams",
    "Zoom",
    "SAP",
    "Salesforce",
    "Jira",
    "Confluence",
    "SharePoint",
    "OneDrive",
    "Chrome",
    "Firefox",
    "Acrobat",
    "Slack",
    "Workday",
    "Citrix",
    "Tableau",
    "AutoCAD",
    "Photoshop",
    "QuickBooks",
)
SERVICES = (
    "VPN",
    "Wi-Fi",
    "email",
    "shared drive",
    "intranet",
    "payroll portal",
    "expense system",
    "CRM",
    "ERP",
    "file server",
    "print server",
    "timesheet system",
    "HR portal",
    "learning portal",
    "remote desktop",
    "calendar",
)
PROBLEMS = (
    "does not start",
    "keeps crashing",
    "is very slow",
    "shows an error",
    "freezes every hour",
    "disconnects every few minutes",
    "will not sync",
    "stopped working",
    "is not recognised",
    "makes a loud noise",
    "overheats",
    "flickers",
    "has a cracked screen",
    "drains the battery quickly",
    "logs me out constantly",
    "cannot find the network",
)
ERRORS = (
    "0x80070005 access denied",
    "error 404 page not found",
    "certificate expired",
    "connection timed out",
    "authentication failed",
    "disk full",
    "license expired",
    "session token expired",
    "DNS name not resolved",
    "sync conflict detected",
    "SMTP relay rejected",
    "TLS handshake failed",
    "quota exceeded",
    "proxy authentication required",
    "blue screen IRQL_NOT_LESS_OR_EQUAL",
    "out of memory",
)
HR_TOPICS = (
    "payroll",
    "overtime pay",
    "parental leave",
    "sick leave",
    "vacation balance",
    "health insurance",
    "pension plan",
    "bonus payment",
    "tax form",
    "relocation allowance",
    "training budget",
    "contract renewal",
    "remote work policy",
    "onboarding",
    "offboarding",
    "certificate of employment",
)
FACILITY_ISSUES = (
    "Broken chair",
    "Leaking tap",
    "Air conditioning too cold",
    "Heating not working",
    "Light flickering",
    "Door lock jammed",
    "Coffee machine broken",
    "Window will not close",
    "Blocked toilet",
    "Noisy ventilation",
    "Parking gate stuck",
    "Elevator out of order",
    "Water dispenser empty",
    "Defibrillator inspection overdue",
)
ROOMS = (
    "Orion",
    "Vega",
    "Lyra",
    "Atlas",
    "Phoenix",
    "Andromeda",
    "Cassiopeia",
    "Draco",
    "Hydra",
    "Pegasus",
    "Sirius",
    "Polaris",
)
PROJECTS = (
    "rebrand",
    "website relaunch",
    "trade fair",
    "summer party",
    "warehouse expansion",
    "customer survey",
    "security audit",
    "cloud migration",
    "sales kickoff",
    "hackathon",
)
EXPENSES = ("train tickets", "hotel", "conference fee", "taxi", "books", "team lunch", "mileage")
VENDORS = ("Dell", "Lenovo", "HP", "Cisco", "Microsoft", "Atlassian", "Canon", "Logitech")
WHEN = (
    "this morning",
    "yesterday afternoon",
    "last Monday",
    "the last update",
    "the office move",
    "two weeks ago",
    "the password change",
    "the power outage",
)
ATTEMPTS = (
    "restarting the laptop",
    "clearing the browser cache",
    "a different cable",
    "reinstalling the driver",
    "logging out and in again",
    "another network",
    "the web version",
    "safe mode",
)
WHO = ("my whole team", "only me", "the night shift", "our customers", "two colleagues")
WORK = (
    "the month-end closing",
    "customer calls",
    "the quarterly report",
    "invoicing",
    "shipping",
    "the audit",
)
FREQ = ("every time", "several times a day", "about once an hour", "only sometimes")
PLACES = ("home", "the branch office", "the train", "a hotel", "the customer site")
TEAMS = ("network team", "second level", "the vendor", "security", "facility management")

# About 120 terms, each used in ~0.2 % of descriptions: selective full-text searches.
RARE_TERMS = (
    "kerberos ldap saml oauth radius dhcp ipsec bitlocker intune autopilot firmware bios uefi "
    "thunderbolt hdmi displayport raid nas sftp rsync powershell macro pivot vlookup chromebook "
    "yubikey smartcard citrix-receiver hyperv vmware docker kubernetes ansible terraform jenkins "
    "gitlab bitbucket postgres oracle mainframe cobol as400 edi sepa iban swift vat invoice-scan "
    "ocr plotter laminator shredder toner fuser duplex stapler whiteboard beamer soundbar "
    "subwoofer lectern turnstile intercom cctv sprinkler fire-alarm evacuation asbestos mould "
    "pigeons elevator-key locker-key parking-permit bicycle-rack shower canteen vending-machine "
    "microwave dishwasher fridge kettle espresso ergonomic footrest standing-desk headrest "
    "sabbatical jubilee apprenticeship internship visa work-permit relocation pension-fund "
    "severance garnishment stipend per-diem mileage-log receipt-scan cost-centre purchase-order "
    "capex opex accrual depreciation audit-trail compliance gdpr whistleblower sanctions "
    "anti-bribery insider onboarding-kit offboarding-kit exit-interview badge-photo lanyard"
).split()

CATEGORY_KINDS = ("it", "access", "asset", "hr", "facility", "finance")

# Terms for the full-text benchmark: (query, what it exercises).
SEARCH_QUERIES = (
    ("printer", "common word (a few % of tickets)"),
    ("password reset", "two common words"),
    ("vpn disconnects", "two words, one common"),
    ("kerberos", "rare word (~0.1 %)"),
    ("outlook crashing", "app + problem"),
    ("defibrillator", "rare word in subjects"),
    ("Orion", "room name"),
    ("payroll", "HR word"),
)


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def hostname(rng: random.Random) -> str:
    return f"ws-{rng.randint(1000, 9999)}"


def asset_tag(rng: random.Random) -> str:
    return f"AT{rng.randint(100000, 999999)}"


def subject(rng: random.Random, kind: str) -> str:
    c = rng.choice
    if kind == "it":
        r = rng.random()
        if r < 0.35:
            s = f"{c(DEVICES).capitalize()} {c(PROBLEMS)}"
        elif r < 0.65:
            s = f"{c(APPS)} {c(PROBLEMS)}"
        elif r < 0.85:
            s = f"{c(SERVICES).capitalize()} {c(PROBLEMS)} since {c(WHEN)}"
        else:
            s = f"{c(APPS)} shows '{c(ERRORS)}'"
    elif kind == "access":
        r = rng.random()
        if r < 0.4:
            s = f"Password reset for {c(SERVICES)}"
        elif r < 0.7:
            s = f"Need access to the {c(PROJECTS)} folder on the {c(SERVICES)}"
        else:
            s = f"Account locked in {c(APPS)}"
    elif kind == "asset":
        s = f"New {c(DEVICES)} for {person(rng)}"
    elif kind == "hr":
        r = rng.random()
        if r < 0.5:
            s = f"Question about {c(HR_TOPICS)}"
        else:
            month = c(("January", "March", "June", "July", "September", "December"))
            s = f"{c(HR_TOPICS).capitalize()} request for {month}"
    elif kind == "facility":
        s = f"{c(FACILITY_ISSUES)} in meeting room {c(ROOMS)}"
    else:
        r = rng.random()
        if r < 0.5:
            s = f"Budget request for the {c(PROJECTS)}"
        else:
            s = f"Reimbursement of {c(EXPENSES)} for the {c(PROJECTS)}"
    return s[:200]


def _specific(rng: random.Random, kind: str) -> list[str]:
    c = rng.choice
    if kind == "hr":
        return [
            f"I have a question about my {c(HR_TOPICS)} for this year.",
            f"Could you check the {c(HR_TOPICS)} in my last statement?",
            f"My manager {person(rng)} asked me to contact HR about it.",
        ]
    if kind == "facility":
        return [
            f"The {c(FACILITY_ISSUES).lower()} near room {c(ROOMS)} is a safety risk.",
            f"Facility management was informed {c(WHEN)} already.",
            f"It is on floor {rng.randint(1, 9)} next to the {c(('kitchen', 'stairs', 'lifts'))}.",
        ]
    if kind == "finance":
        return [
            f"The {c(PROJECTS)} needs {rng.randint(2, 90) * 100} EUR for {c(EXPENSES)}.",
            f"The cost centre is CC-{rng.randint(100, 999)}.",
            f"Receipts are attached; the approver is {person(rng)}.",
        ]
    if kind == "access":
        return [
            f"My manager {person(rng)} approved the access.",
            f"I need it for the {c(PROJECTS)} starting next week.",
            f"The {c(SERVICES)} says '{c(ERRORS)}' when I sign in.",
        ]
    if kind == "asset":
        return [
            f"The new colleague starts on {c(('Monday', 'the 1st', 'next week'))}.",
            f"Please order a {c(DEVICES)} from {c(VENDORS)} if none is in stock.",
        ]
    return [
        f"Since {c(WHEN)} the {c(DEVICES)} {c(PROBLEMS)}.",
        f'The error message says "{c(ERRORS)}".',
        f"{c(APPS)} {c(PROBLEMS)} when I open large files.",
        f"The {c(SERVICES)} {c(PROBLEMS)} for {c(WHO)}.",
    ]


def _generic(rng: random.Random) -> list[str]:
    c = rng.choice
    return [
        f"I tried {c(ATTEMPTS)} but it did not help.",
        f"This affects {c(WHO)} and blocks {c(WORK)}.",
        f"It happens {c(FREQ)}, mostly in the afternoon.",
        f"I am working from {c(PLACES)} this week.",
        f"My asset tag is {asset_tag(rng)} and the hostname is {hostname(rng)}.",
        f"I already asked {person(rng)} from my team, who has the same problem.",
        f"Please call me on extension {rng.randint(2000, 7999)} if anything is unclear.",
    ]


def description(rng: random.Random, kind: str) -> str:
    """2-4 short paragraphs of Markdown-free text (paragraphs separated by a blank line).

    The first paragraph states the problem, an optional second one adds details; one ticket in
    four mentions a term of RARE_TERMS (each in about 0.2 % of tickets).
    """
    paragraphs = [" ".join(rng.sample(_specific(rng, kind), 2))]
    generic = _generic(rng)
    rng.shuffle(generic)
    if rng.random() < 0.8:
        paragraphs.append(" ".join(generic[: rng.randint(1, 3)]))
    if rng.random() < 0.4:
        paragraphs.append(" ".join(generic[3:]))
    if rng.random() < 0.25:
        paragraphs.append(f"It might be related to {rng.choice(RARE_TERMS)}.")
    paragraphs.append(f"Thanks, {rng.choice(FIRST_NAMES)}")
    return "\n\n".join(paragraphs)


def agent_reply(rng: random.Random) -> str:
    c = rng.choice
    options = (
        f"Thanks for reporting this. I restarted the {c(SERVICES)} service, please try again.",
        "Could you send a screenshot of the error and the exact time it happened?",
        f"A technician will come to room {c(ROOMS)} {c(('today', 'tomorrow', 'on Friday'))}.",
        f"We ordered a replacement {c(DEVICES)} from {c(VENDORS)}; delivery takes about a week.",
        "I have reset your password. You will be asked to choose a new one at the next sign-in.",
        f"This is a known issue with {c(APPS)} after the last update; a fix is being rolled out.",
        f"I granted the access. It can take up to an hour until the {c(SERVICES)} picks it up.",
        "Your request has been approved and forwarded to the responsible team.",
    )
    return c(options)


def requester_reply(rng: random.Random) -> str:
    c = rng.choice
    options = (
        "It works again, thank you!",
        f"Still the same problem after {c(ATTEMPTS)}.",
        "Here is the screenshot you asked for.",
        f"I am out of office until {c(('Monday', 'next week', 'the 15th'))}, keep it open.",
        f"Any update? This still blocks {c(WORK)}.",
        f"The {c(DEVICES)} now shows '{c(ERRORS)}' as well.",
    )
    return c(options)


def internal_note(rng: random.Random) -> str:
    c = rng.choice
    options = (
        f"Escalated to the {c(TEAMS)}.",
        f"Vendor case {c(VENDORS).upper()}-{rng.randint(10000, 99999)} opened.",
        f"Known problem, see PRB{rng.randint(1000, 9999)}.",
        f"Waiting for parts from {c(VENDORS)}.",
        f"Checked the logs on {hostname(rng)}: {c(ERRORS)}.",
    )
    return c(options)


def to_html(text: str) -> str:
    """Roughly what the product's Markdown renderer makes of plain paragraphs."""
    return "".join(
        f"<p>{html.escape(p, quote=False).replace(chr(34), '&quot;')}</p>\n"
        for p in text.split("\n\n")
    )
