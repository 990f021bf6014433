"""A name the resolver rejects without sending a query.

glibc refuses a label that starts with a hyphen before any DNS traffic, with the same
``EAI_NONAME`` a real "no such name" answer gives; a plain ``*.invalid`` name would be sent
to the machine's nameserver, off loopback.
"""

UNRESOLVABLE = "-unresolvable-.invalid"
