"""The librarian's records on paper and in spreadsheets: registers, statistics, the
Thông tư 16 self-assessment, labels and cards. Builders return a `Report`
(`server.reports.document`); `pdf` and `xlsx` render any of them."""
