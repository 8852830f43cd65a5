"""HF RFID (ISO 15693) library tags: reader protocols and the ISO 28560 tag data codecs.

`drivers.rfid.tagdata` turns the user memory of a library tag into a `TagData` and back.
"""
