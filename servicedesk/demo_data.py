"""Content of the demo desk: categories with their own fields, and realistic requests."""

from __future__ import annotations

from typing import Any

CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "IT Support",
        "description": "Hardware, software, accounts and network problems.",
        "default_priority": "medium",
        "department": "IT",
        "fields": [
            {
                "key": "asset_name",
                "label": "Asset name",
                "type": "text",
                "required": True,
                "max": 120,
            },
            {"key": "serial_number", "label": "Serial number", "type": "text", "max": 60},
            {
                "key": "issue_type",
                "label": "Issue type",
                "type": "select",
                "required": True,
                "choices": ["Hardware", "Software", "Network", "Account access", "Other"],
            },
            {"key": "other_issue", "label": "Other issue", "type": "long_text", "max": 2000},
        ],
        "children": [
            {"name": "Email and calendar", "default_priority": "medium"},
            {"name": "VPN and remote access", "default_priority": "high"},
        ],
    },
    {
        "name": "Asset Request",
        "description": "Borrow or receive equipment.",
        "default_priority": "low",
        "department": "IT",
        "fields": [
            {
                "key": "asset_name",
                "label": "Asset name",
                "type": "text",
                "required": True,
                "max": 120,
            },
            {"key": "location", "label": "Location", "type": "text", "required": True, "max": 120},
            {"key": "expected_return_date", "label": "Expected return date", "type": "date"},
        ],
    },
    {
        "name": "HR Request",
        "description": "Leave, payroll, certificates and policies.",
        "default_priority": "medium",
        "department": "Human Resources",
        "fields": [
            {
                "key": "request_type",
                "label": "Request type",
                "type": "select",
                "required": True,
                "choices": ["Certificate of employment", "Leave", "Payroll", "Benefits", "Other"],
            },
            {"key": "confidential", "label": "Confidential", "type": "boolean"},
        ],
    },
    {
        "name": "Facility Request",
        "description": "Rooms, repairs, cleaning and access badges.",
        "default_priority": "low",
        "department": "Facilities",
        "fields": [
            {
                "key": "building",
                "label": "Building",
                "type": "select",
                "required": True,
                "choices": ["HQ", "Warehouse", "Lab"],
            },
            {"key": "room", "label": "Room", "type": "text", "max": 40},
        ],
    },
    {
        "name": "Budget Request",
        "description": "Funding for projects, events and purchases.",
        "default_priority": "medium",
        "department": "Finance",
        "fields": [
            {"key": "cost_items", "label": "Cost items", "type": "cost_items", "required": True},
            {
                "key": "requested_budget",
                "label": "Requested budget",
                "type": "money",
                "required": True,
                "min": 0,
            },
            {"key": "performance_start", "label": "Performance start", "type": "date"},
            {"key": "performance_end", "label": "Performance end", "type": "date"},
            {"key": "approved_by", "label": "Approved by", "type": "text", "max": 120},
        ],
    },
]

# (category, subject, description, custom fields)
REQUESTS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "IT Support",
        "Laptop does not boot after update",
        "Since this morning's update my laptop shows a black screen after the logo. "
        "I tried a hard reset twice.",
        {"asset_name": "ThinkPad T14", "serial_number": "PF3K9Z", "issue_type": "Hardware"},
    ),
    (
        "IT Support",
        "Cannot log in to payroll portal",
        "The payroll portal says my password expired but the reset link never arrives.",
        {"asset_name": "Payroll portal", "issue_type": "Account access"},
    ),
    (
        "IT Support",
        "Printer on 3rd floor jams constantly",
        "The HP printer near the kitchen jams on every second page. Paper tray looks fine.",
        {"asset_name": "HP LaserJet M607", "serial_number": "CNB1234567", "issue_type": "Hardware"},
    ),
    (
        "IT Support",
        "Wi-Fi drops in meeting room Orion",
        "Video calls in Orion disconnect every few minutes; other rooms are fine.",
        {"asset_name": "Meeting room Orion AP", "issue_type": "Network"},
    ),
    (
        "IT Support",
        "Excel crashes when opening large files",
        "Excel closes without an error when I open the quarterly report (40 MB).",
        {"asset_name": "Excel 365", "issue_type": "Software"},
    ),
    (
        "IT Support",
        "Need access to the design shared drive",
        "Please give me read/write access to \\\\files\\design for the rebrand project.",
        {"asset_name": "Design share", "issue_type": "Account access"},
    ),
    (
        "IT Support",
        "Monitor flickers on the left side",
        "My external monitor flickers on the left third, more when it is warm.",
        {"asset_name": "Dell U2720Q", "serial_number": "CN0ABC", "issue_type": "Hardware"},
    ),
    (
        "IT Support",
        "Phishing email received - please check",
        "I got an email asking me to confirm my bank details with our logo. I did not click.",
        {"asset_name": "Outlook", "issue_type": "Other", "other_issue": "Suspicious email"},
    ),
    (
        "Asset Request",
        "Loaner laptop for conference trip",
        "I need a loaner laptop for the Berlin conference next week.",
        {
            "asset_name": "Loaner laptop",
            "location": "HQ reception",
            "expected_return_date": "2026-12-18",
        },
    ),
    (
        "Asset Request",
        "Second monitor for new hire",
        "Our new analyst starts Monday and needs a second monitor at desk 4.12.",
        {"asset_name": "24 inch monitor", "location": "HQ desk 4.12"},
    ),
    (
        "Asset Request",
        "Headset for customer calls",
        "My headset microphone broke; I take customer calls all day.",
        {"asset_name": "USB headset", "location": "HQ support area"},
    ),
    (
        "HR Request",
        "Certificate of employment for visa application",
        "I need a certificate of employment in English for my visa appointment.",
        {"request_type": "Certificate of employment", "confidential": False},
    ),
    (
        "HR Request",
        "Parental leave planning",
        "I would like to plan parental leave from March; what documents do you need?",
        {"request_type": "Leave", "confidential": True},
    ),
    (
        "HR Request",
        "Overtime missing from last payslip",
        "The 12 hours of overtime from October are not on my November payslip.",
        {"request_type": "Payroll", "confidential": True},
    ),
    (
        "HR Request",
        "Question about gym benefit",
        "Does the gym benefit cover climbing halls as well?",
        {"request_type": "Benefits"},
    ),
    (
        "Facility Request",
        "Broken chair in meeting room Vega",
        "One of the chairs in Vega has a broken backrest; someone could get hurt.",
        {"building": "HQ", "room": "Vega"},
    ),
    (
        "Facility Request",
        "Access badge does not open lab door",
        "My badge works everywhere except the lab entrance since Monday.",
        {"building": "Lab", "room": "Entrance"},
    ),
    (
        "Facility Request",
        "Heating too low in warehouse office",
        "The office in the warehouse is at 16 degrees in the mornings.",
        {"building": "Warehouse", "room": "Office 1"},
    ),
    (
        "Budget Request",
        "Budget for team offsite in January",
        "Requesting budget for a two-day team offsite with venue and travel.",
        {
            "cost_items": [
                {"description": "Venue, two days", "quantity": 2, "unit_cost": "850.00"},
                {"description": "Train tickets", "quantity": 12, "unit_cost": "79.90"},
            ],
            "requested_budget": "2658.80",
            "performance_start": "2027-01-20",
            "performance_end": "2027-01-21",
        },
    ),
    (
        "Budget Request",
        "Licenses for design software",
        "Five additional licenses for the design team's vector tool for one year.",
        {
            "cost_items": [{"description": "Annual license", "quantity": 5, "unit_cost": "599.00"}],
            "requested_budget": "2995.00",
        },
    ),
]

PUBLIC_REPLIES = [
    "Thanks for reporting this. I am looking into it now.",
    "Could you send a photo or a screenshot of the problem?",
    "We have ordered the replacement part; it should arrive in two days.",
    "This is done on our side. Can you check whether it works for you now?",
    "I have escalated this to our vendor and will update you tomorrow.",
]
REQUESTER_REPLIES = [
    "Thanks! Here is some more detail: it happens every time.",
    "It works again, thank you for the quick help.",
    "Any news on this? It is blocking my work.",
]
INTERNAL_NOTES = [
    "Known issue with the latest driver; rollback fixes it. @agent@acme.example.com FYI.",
    "Checked the logs: the account was locked by the password policy.",
    "Vendor ticket opened, reference VND-2231.",
]
