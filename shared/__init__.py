"""The ON24 <-> Dynamics 365 event management integration: all logic behind the function folders."""
