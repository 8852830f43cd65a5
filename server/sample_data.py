"""Word lists for the demo library (`server/seed.py`): names, books, publishers.

Real books are listed with their real authors; where a title is generic (workbooks,
teachers' guides) the author is a team ("Nhiều tác giả") or left for the seeder to
invent, so that no real person is credited with a book they did not write.
"""

from __future__ import annotations

from typing import NamedTuple

# --- People -----------------------------------------------------------------------------

# Family names with rough shares (per cent) of the Vietnamese population; regional pairs
# (Hoàng/Huỳnh, Vũ/Võ) are both kept so that a class list looks like anywhere in the country.
FAMILY_NAMES: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.0), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.1), ("Hoàng", 3.1),
    ("Huỳnh", 2.0), ("Phan", 4.5), ("Vũ", 2.5), ("Võ", 1.4), ("Đặng", 2.1), ("Bùi", 2.0),
    ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5), ("Đinh", 0.7),
    ("Trịnh", 0.6), ("Trương", 0.5), ("Mai", 0.5), ("Đào", 0.5), ("Đoàn", 0.4),
    ("Lương", 0.4), ("Cao", 0.4), ("Hà", 0.4), ("Tạ", 0.3), ("Lâm", 0.3), ("Vương", 0.2),
    ("Chu", 0.2), ("Kiều", 0.2), ("Tô", 0.2), ("Triệu", 0.2), ("Quách", 0.1),
)

# Children born in the 2010s: "Văn" and "Thị" are rarer than in their parents' generation.
MALE_MIDDLE_NAMES: tuple[tuple[str, float], ...] = (
    ("Văn", 6), ("Minh", 12), ("Đức", 8), ("Quang", 7), ("Gia", 8), ("Bảo", 8),
    ("Hoàng", 5), ("Anh", 5), ("Tuấn", 3), ("Hữu", 3), ("Thành", 4), ("Trung", 3),
    ("Đăng", 4), ("Khánh", 3), ("Duy", 4), ("Nhật", 4), ("Thế", 2), ("Công", 2),
    ("Tiến", 2), ("Hải", 2), ("Phúc", 2), ("Trọng", 2),
)
FEMALE_MIDDLE_NAMES: tuple[tuple[str, float], ...] = (
    ("Thị", 6), ("Ngọc", 10), ("Thu", 4), ("Thanh", 5), ("Phương", 5), ("Minh", 7),
    ("Bảo", 6), ("Khánh", 6), ("Hải", 3), ("Mai", 3), ("Diệu", 3), ("Thảo", 4),
    ("Hà", 3), ("Hồng", 2), ("Quỳnh", 3), ("Tuệ", 2), ("Gia", 4), ("Kim", 3),
    ("Hoài", 2), ("Tú", 2), ("Yến", 2), ("Lan", 2),
)
# Two-word middle names as parents give them, often with the mother's family name second
# (Nguyễn Trần Minh Khang, Lê Thị Thu Hà).
MALE_DOUBLE_MIDDLE_NAMES: tuple[str, ...] = (
    "Hoàng Gia", "Ngọc Gia", "Văn Minh", "Đình Minh", "Trần Minh", "Lê Gia", "Phạm Bảo",
    "Hữu Minh",
)
FEMALE_DOUBLE_MIDDLE_NAMES: tuple[str, ...] = (
    "Thị Thu", "Thị Ngọc", "Thị Thanh", "Ngọc Bảo", "Ngọc Khánh", "Ngọc Minh", "Trần Bảo",
    "Lê Khánh",
)
MALE_GIVEN_NAMES: tuple[str, ...] = (
    "An", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Dương", "Đạt", "Đức", "Hải", "Hiếu",
    "Hoàng", "Huy", "Hùng", "Khang", "Khải", "Khánh", "Khoa", "Kiên", "Lâm", "Long", "Lộc",
    "Minh", "Nam", "Nghĩa", "Nhân", "Phát", "Phong", "Phúc", "Quân", "Quang", "Sơn", "Tài",
    "Thắng", "Thành", "Thiện", "Tiến", "Toàn", "Trung", "Trí", "Tú", "Tuấn", "Vinh",
    "Việt", "Vũ", "Hưng", "Kiệt", "Nguyên", "Thịnh", "Đăng",
)
FEMALE_GIVEN_NAMES: tuple[str, ...] = (
    "Anh", "Chi", "Diệp", "Dung", "Giang", "Hà", "Hân", "Hằng", "Hạnh", "Hiền", "Hoa",
    "Hương", "Huyền", "Lan", "Linh", "Ly", "Mai", "My", "Nga", "Ngân", "Ngọc", "Nhi",
    "Nhung", "Oanh", "Phương", "Quyên", "Quỳnh", "Thảo", "Thư", "Trang", "Trâm", "Uyên",
    "Vân", "Vy", "Yến", "Hạ", "Châu", "Khuê", "Tâm", "An", "Loan", "Nhàn", "Như", "Thủy",
)
# Teachers were born in the 1970s-90s, when these were the usual middle names.
TEACHER_MALE_MIDDLE_NAMES: tuple[str, ...] = (
    "Văn", "Văn", "Văn", "Đức", "Minh", "Quang", "Hữu", "Mạnh", "Xuân", "Ngọc", "Thanh",
    "Công",
)
TEACHER_FEMALE_MIDDLE_NAMES: tuple[str, ...] = (
    "Thị", "Thị", "Thị", "Thị", "Thu", "Thanh", "Ngọc", "Minh", "Kim", "Phương", "Hồng",
    "Bích",
)

BLOCK_REASONS: tuple[str, ...] = (
    "Làm mất sách chưa bồi thường",
    "Làm rách sách, chờ giải quyết với phụ huynh",
)

# --- Publishers ---------------------------------------------------------------------------

KIM_DONG = "NXB Kim Đồng"
GIAO_DUC = "NXB Giáo dục Việt Nam"
TRE = "NXB Trẻ"
VAN_HOC = "NXB Văn học"
HOI_NHA_VAN = "NXB Hội Nhà văn"
DHSP = "NXB Đại học Sư phạm"
TONG_HOP_HCM = "NXB Tổng hợp Thành phố Hồ Chí Minh"
CHINH_TRI = "NXB Chính trị quốc gia Sự thật"
QDND = "NXB Quân đội nhân dân"
KHXH = "NXB Khoa học xã hội"
TRI_THUC = "NXB Tri thức"
THANH_NIEN = "NXB Thanh niên"
DA_NANG = "NXB Đà Nẵng"
HONG_DUC = "NXB Hồng Đức"
BACH_KHOA = "NXB Từ điển Bách khoa"
DHQG_HN = "NXB Đại học Quốc gia Hà Nội"

# ISBN registrant groups seen on these publishers' books (978-604-0 Giáo dục, -1 Trẻ,
# -2 Kim Đồng); other publishers get a random group. Demo data only.
ISBN_GROUPS: dict[str, str] = {GIAO_DUC: "0", TRE: "1", KIM_DONG: "2"}

# --- Books ----------------------------------------------------------------------------------


class Book(NamedTuple):
    title: str
    author: str | None      # None: anonymous (folk tales), as catalogues leave it
    publisher: str
    ddc: str                # DDC 23 class number, the first part of the call number
    subject: str            # môn loại


# Literature for young readers: ĐKCB prefix TN.
VN_CHILDREN: tuple[Book, ...] = (
    Book("Dế Mèn phiêu lưu ký", "Tô Hoài", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Võ sĩ Bọ Ngựa", "Tô Hoài", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Đảo hoang", "Tô Hoài", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Kim Đồng", "Tô Hoài", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Đất rừng phương Nam", "Đoàn Giỏi", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Quê nội", "Võ Quảng", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Tảng sáng", "Võ Quảng", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Tuổi thơ dữ dội", "Phùng Quán", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Lá cờ thêu sáu chữ vàng", "Nguyễn Huy Tưởng", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Búp sen xanh", "Sơn Tùng", KIM_DONG, "895.9223", "Thiếu nhi"),
    Book("Góc sân và khoảng trời", "Trần Đăng Khoa", KIM_DONG, "895.9221", "Thiếu nhi"),
    Book("Bầu trời trong quả trứng", "Xuân Quỳnh", KIM_DONG, "895.9221", "Thiếu nhi"),
    Book("Vừa nhắm mắt vừa mở cửa sổ", "Nguyễn Ngọc Thuần", TRE, "895.9223", "Thiếu nhi"),
    Book("Trên đồi cao chăn bầy thú dữ", "Nguyễn Ngọc Thuần", TRE, "895.9223", "Thiếu nhi"),
    Book("Một thiên nằm mộng", "Nguyễn Ngọc Thuần", TRE, "895.9223", "Thiếu nhi"),
)

NGUYEN_NHAT_ANH: tuple[str, ...] = (
    "Cho tôi xin một vé đi tuổi thơ", "Mắt biếc", "Tôi thấy hoa vàng trên cỏ xanh",
    "Cô gái đến từ hôm qua", "Ngồi khóc trên cây", "Cây chuối non đi giày xanh",
    "Bồ câu không đưa thư", "Hạ đỏ", "Chúc một ngày tốt lành",
    "Có hai con mèo ngồi bên cửa sổ", "Tôi là Bêtô", "Còn chút gì để nhớ", "Trại hoa vàng",
    "Lá nằm trong lá", "Con chó nhỏ mang giỏ hoa hồng", "Cảm ơn người lớn",
    "Bàn có năm chỗ ngồi", "Út Quyên và tôi", "Những chàng trai xấu tính", "Thằng quỷ nhỏ",
    "Đảo mộng mơ", "Ngày xưa có một chuyện tình",
)

# Series shelved volume by volume: (title, author, publisher, ddc, subject, volumes).
SERIES: tuple[tuple[str, str, str, str, str, int], ...] = (
    ("Kính vạn hoa", "Nguyễn Nhật Ánh", KIM_DONG, "895.9223", "Thiếu nhi", 18),
    ("Lịch sử Việt Nam bằng tranh", "Trần Bạch Đằng (chủ biên)", TRE, "959.7", "Lịch sử", 10),
    ("Doraemon", "Fujiko F. Fujio", KIM_DONG, "741.5952", "Truyện tranh", 10),
    ("Thám tử lừng danh Conan", "Gosho Aoyama", KIM_DONG, "741.5952", "Truyện tranh", 8),
)

FOLK_TALES: tuple[str, ...] = (
    "Sự tích Hồ Gươm", "Thánh Gióng", "Sơn Tinh, Thủy Tinh", "Con Rồng cháu Tiên",
    "Tấm Cám", "Thạch Sanh", "Cây tre trăm đốt", "Sọ Dừa", "Sự tích trầu cau", "Cây khế",
    "Bánh chưng, bánh giầy",
)

FOREIGN_CHILDREN: tuple[Book, ...] = (
    Book("Hoàng tử bé", "Antoine de Saint-Exupéry", HOI_NHA_VAN, "843", "Văn học nước ngoài"),
    Book("Không gia đình", "Hector Malot", VAN_HOC, "843", "Văn học nước ngoài"),
    Book("Những tấm lòng cao cả", "Edmondo De Amicis", VAN_HOC, "853", "Văn học nước ngoài"),
    Book("Những cuộc phiêu lưu của Tom Sawyer", "Mark Twain", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Những cuộc phiêu lưu của Huckleberry Finn", "Mark Twain", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Robinson Crusoe", "Daniel Defoe", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Hai vạn dặm dưới đáy biển", "Jules Verne", KIM_DONG, "843", "Văn học nước ngoài"),
    Book("Tám mươi ngày vòng quanh thế giới", "Jules Verne", KIM_DONG, "843", "Văn học nước ngoài"),
    Book("Hòn đảo bí ẩn", "Jules Verne", KIM_DONG, "843", "Văn học nước ngoài"),
    Book("Những đứa con của thuyền trưởng Grant", "Jules Verne", KIM_DONG, "843", "Văn học nước ngoài"),
    Book("Alice ở xứ sở thần tiên", "Lewis Carroll", KIM_DONG, "823", "Văn học nước ngoài"),
    Book("Harry Potter và hòn đá phù thủy", "J. K. Rowling", TRE, "823", "Văn học nước ngoài"),
    Book("Harry Potter và phòng chứa bí mật", "J. K. Rowling", TRE, "823", "Văn học nước ngoài"),
    Book("Harry Potter và tên tù nhân ngục Azkaban", "J. K. Rowling", TRE, "823", "Văn học nước ngoài"),
    Book("Chuyện con mèo dạy hải âu bay", "Luis Sepúlveda", HOI_NHA_VAN, "863", "Văn học nước ngoài"),
    Book("Charlie và nhà máy sô-cô-la", "Roald Dahl", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Matilda", "Roald Dahl", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Cây cam ngọt của tôi", "José Mauro de Vasconcelos", HOI_NHA_VAN, "869.3", "Văn học nước ngoài"),
    Book("Tốt-tô-chan bên cửa sổ", "Kuroyanagi Tetsuko", HOI_NHA_VAN, "895.63", "Văn học nước ngoài"),
    Book("Pippi Tất Dài", "Astrid Lindgren", KIM_DONG, "839.73", "Văn học nước ngoài"),
    Book("Nghìn lẻ một đêm", None, VAN_HOC, "398.2", "Văn học nước ngoài"),
    Book("Truyện cổ Grimm", "Jacob Grimm, Wilhelm Grimm", KIM_DONG, "398.2", "Văn học nước ngoài"),
    Book("Truyện cổ Andersen", "Hans Christian Andersen", KIM_DONG, "839.8136", "Văn học nước ngoài"),
    Book("Ngụ ngôn La Fontaine", "Jean de La Fontaine", VAN_HOC, "841", "Văn học nước ngoài"),
    Book("Những cuộc phiêu lưu của Pinocchio", "Carlo Collodi", KIM_DONG, "853", "Văn học nước ngoài"),
    Book("Gió qua rặng liễu", "Kenneth Grahame", KIM_DONG, "823", "Văn học nước ngoài"),
    Book("Peter Pan", "J. M. Barrie", KIM_DONG, "823", "Văn học nước ngoài"),
    Book("Nanh trắng", "Jack London", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Tiếng gọi nơi hoang dã", "Jack London", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Ông già Khottabych", "Lazar Lagin", KIM_DONG, "891.73", "Văn học nước ngoài"),
    Book("Những cuộc phiêu lưu của Mít Đặc và các bạn", "Nikolai Nosov", KIM_DONG, "891.73", "Văn học nước ngoài"),
    Book("Heidi", "Johanna Spyri", KIM_DONG, "833", "Văn học nước ngoài"),
    Book("Hoàng tử hạnh phúc", "Oscar Wilde", KIM_DONG, "823", "Văn học nước ngoài"),
    Book("Trên sa mạc và trong rừng thẳm", "Henryk Sienkiewicz", KIM_DONG, "891.85", "Văn học nước ngoài"),
    Book("Chú bé mang pyjama sọc", "John Boyne", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Điều kỳ diệu", "R. J. Palacio", HOI_NHA_VAN, "813", "Văn học nước ngoài"),
    Book("Khu vườn bí mật", "Frances Hodgson Burnett", KIM_DONG, "823", "Văn học nước ngoài"),
    Book("Nhật ký Anne Frank", "Anne Frank", HOI_NHA_VAN, "940.53", "Văn học nước ngoài"),
)

# English-language readers (language "eng"): licensed Vietnamese reprints.
ENGLISH_CHILDREN: tuple[Book, ...] = (
    Book("The Little Prince", "Antoine de Saint-Exupéry", TONG_HOP_HCM, "843", "Tiếng Anh"),
    Book("Charlotte's Web", "E. B. White", TONG_HOP_HCM, "813", "Tiếng Anh"),
    Book("Charlie and the Chocolate Factory", "Roald Dahl", TONG_HOP_HCM, "823", "Tiếng Anh"),
)

# Literature and non-fiction for older readers and teachers: ĐKCB prefix TK.
VN_LITERATURE: tuple[Book, ...] = (
    Book("Tắt đèn", "Ngô Tất Tố", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Lều chõng", "Ngô Tất Tố", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Số đỏ", "Vũ Trọng Phụng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Giông tố", "Vũ Trọng Phụng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Bỉ vỏ", "Nguyên Hồng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Những ngày thơ ấu", "Nguyên Hồng", KIM_DONG, "895.9228", "Văn học Việt Nam"),
    Book("Chí Phèo", "Nam Cao", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Sống mòn", "Nam Cao", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Truyện ngắn Nam Cao", "Nam Cao", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Truyện ngắn Kim Lân", "Kim Lân", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Gió lạnh đầu mùa", "Thạch Lam", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Hà Nội băm sáu phố phường", "Thạch Lam", HOI_NHA_VAN, "895.9228", "Văn học Việt Nam"),
    Book("Vang bóng một thời", "Nguyễn Tuân", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Bước đường cùng", "Nguyễn Công Hoan", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Truyện Kiều", "Nguyễn Du", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Lục Vân Tiên", "Nguyễn Đình Chiểu", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Chinh phụ ngâm", "Đặng Trần Côn", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Hoàng Lê nhất thống chí", "Ngô gia văn phái", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Truyền kỳ mạn lục", "Nguyễn Dữ", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Thơ Hồ Xuân Hương", "Hồ Xuân Hương", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Từ ấy", "Tố Hữu", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Việt Bắc", "Tố Hữu", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Lửa thiêng", "Huy Cận", HOI_NHA_VAN, "895.9221", "Văn học Việt Nam"),
    Book("Thơ thơ", "Xuân Diệu", HOI_NHA_VAN, "895.9221", "Văn học Việt Nam"),
    Book("Đau thương", "Hàn Mặc Tử", HOI_NHA_VAN, "895.9221", "Văn học Việt Nam"),
    Book("Thi nhân Việt Nam", "Hoài Thanh, Hoài Chân", VAN_HOC, "895.92210", "Văn học Việt Nam"),
    Book("Vợ chồng A Phủ", "Tô Hoài", KIM_DONG, "895.9223", "Văn học Việt Nam"),
    Book("Những ngôi sao xa xôi", "Lê Minh Khuê", KIM_DONG, "895.9223", "Văn học Việt Nam"),
    Book("Chiếc lược ngà", "Nguyễn Quang Sáng", KIM_DONG, "895.9223", "Văn học Việt Nam"),
    Book("Bến quê", "Nguyễn Minh Châu", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Dấu chân người lính", "Nguyễn Minh Châu", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Lặng lẽ Sa Pa", "Nguyễn Thành Long", KIM_DONG, "895.9223", "Văn học Việt Nam"),
    Book("Rừng xà nu", "Nguyễn Trung Thành", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Đất nước đứng lên", "Nguyên Ngọc", KIM_DONG, "895.9223", "Văn học Việt Nam"),
    Book("Hòn Đất", "Anh Đức", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Sống mãi với thủ đô", "Nguyễn Huy Tưởng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Vỡ bờ", "Nguyễn Đình Thi", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Mùa lá rụng trong vườn", "Ma Văn Kháng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Thời xa vắng", "Lê Lựu", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Cánh đồng bất tận", "Nguyễn Ngọc Tư", TRE, "895.9223", "Văn học Việt Nam"),
    Book("Hương rừng Cà Mau", "Sơn Nam", TRE, "895.9223", "Văn học Việt Nam"),
    Book("Gánh hàng hoa", "Nhất Linh, Khái Hưng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Đoạn tuyệt", "Nhất Linh", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Hồn bướm mơ tiên", "Khái Hưng", VAN_HOC, "895.9223", "Văn học Việt Nam"),
    Book("Mãi mãi tuổi hai mươi", "Nguyễn Văn Thạc", THANH_NIEN, "895.9228", "Văn học Việt Nam"),
    Book("Nhật ký Đặng Thùy Trâm", "Đặng Thùy Trâm", HOI_NHA_VAN, "895.9228", "Văn học Việt Nam"),
    Book("Nhật ký trong tù", "Hồ Chí Minh", VAN_HOC, "895.9221", "Văn học Việt Nam"),
    Book("Đường xưa mây trắng", "Thích Nhất Hạnh", HOI_NHA_VAN, "895.9223", "Văn học Việt Nam"),
    Book("Kho tàng truyện cổ tích Việt Nam", "Nguyễn Đổng Chi", GIAO_DUC, "398.209597", "Văn học dân gian"),
)

FOREIGN_LITERATURE: tuple[Book, ...] = (
    Book("Ông già và biển cả", "Ernest Hemingway", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Những người khốn khổ", "Victor Hugo", VAN_HOC, "843", "Văn học nước ngoài"),
    Book("Nhà thờ Đức Bà Paris", "Victor Hugo", VAN_HOC, "843", "Văn học nước ngoài"),
    Book("Đồi gió hú", "Emily Brontë", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Giết con chim nhại", "Harper Lee", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Túp lều bác Tôm", "Harriet Beecher Stowe", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Thép đã tôi thế đấy", "Nikolai Ostrovsky", VAN_HOC, "891.73", "Văn học nước ngoài"),
    Book("Chiến tranh và hòa bình", "Lev Tolstoy", VAN_HOC, "891.73", "Văn học nước ngoài"),
    Book("Ba chàng lính ngự lâm", "Alexandre Dumas", VAN_HOC, "843", "Văn học nước ngoài"),
    Book("Bá tước Monte Cristo", "Alexandre Dumas", VAN_HOC, "843", "Văn học nước ngoài"),
    Book("Tam quốc diễn nghĩa", "La Quán Trung", VAN_HOC, "895.13", "Văn học nước ngoài"),
    Book("Thủy hử", "Thi Nại Am", VAN_HOC, "895.13", "Văn học nước ngoài"),
    Book("Tây du ký", "Ngô Thừa Ân", VAN_HOC, "895.13", "Văn học nước ngoài"),
    Book("Ruồi trâu", "Ethel Lilian Voynich", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Sherlock Holmes toàn tập", "Arthur Conan Doyle", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Tiếng chim hót trong bụi mận gai", "Colleen McCullough", VAN_HOC, "823", "Văn học nước ngoài"),
    Book("Chiếc lá cuối cùng", "O. Henry", VAN_HOC, "813", "Văn học nước ngoài"),
    Book("Nhà giả kim", "Paulo Coelho", HOI_NHA_VAN, "869.3", "Văn học nước ngoài"),
)

NON_FICTION: tuple[Book, ...] = (
    Book("Đường Kách Mệnh", "Hồ Chí Minh", CHINH_TRI, "320.9597", "Chính trị - Xã hội"),
    Book("Đường tới Điện Biên Phủ", "Võ Nguyên Giáp", QDND, "959.7041", "Lịch sử"),
    Book("Việt Nam sử lược", "Trần Trọng Kim", HOI_NHA_VAN, "959.7", "Lịch sử"),
    Book("Đại Việt sử ký toàn thư", "Ngô Sĩ Liên và các sử thần triều Lê", KHXH, "959.7", "Lịch sử"),
    Book("Việt Nam văn hóa sử cương", "Đào Duy Anh", HOI_NHA_VAN, "306.09597", "Văn hóa"),
    Book("Lược sử thời gian", "Stephen Hawking", TRE, "523.1", "Khoa học tự nhiên"),
    Book("Vũ trụ trong vỏ hạt dẻ", "Stephen Hawking", TRE, "523.1", "Khoa học tự nhiên"),
    Book("Sapiens: Lược sử loài người", "Yuval Noah Harari", TRI_THUC, "909", "Lịch sử"),
    Book("Đắc nhân tâm", "Dale Carnegie", TONG_HOP_HCM, "158.2", "Kỹ năng sống"),
    Book("Trên đường băng", "Tony Buổi Sáng", TRE, "158.1", "Kỹ năng sống"),
    Book("Cà phê cùng Tony", "Tony Buổi Sáng", TRE, "158.1", "Kỹ năng sống"),
)

# Dictionaries, atlases, encyclopedias: one copy of each stays in the reading room.
REFERENCE_WORKS: tuple[Book, ...] = (
    Book("Từ điển tiếng Việt", "Hoàng Phê (chủ biên)", DA_NANG, "495.9223", "Từ điển"),
    Book("Hán Việt từ điển giản yếu", "Đào Duy Anh", HONG_DUC, "495.9223", "Từ điển"),
    Book("Từ điển thành ngữ và tục ngữ Việt Nam", "Nguyễn Lân", VAN_HOC, "398.9", "Từ điển"),
    Book("Từ điển Anh – Việt", "Viện Ngôn ngữ học", KHXH, "423.95922", "Từ điển"),
    Book("Từ điển Việt – Anh", "Nhiều tác giả", DHQG_HN, "495.922321", "Từ điển"),
    Book("Từ điển Toán học phổ thông", "Nhiều tác giả", GIAO_DUC, "510.3", "Từ điển"),
    Book("Atlat Địa lí Việt Nam", "Nhiều tác giả", GIAO_DUC, "912.597", "Địa lí"),
    Book("Từ điển bách khoa Việt Nam – Tập 1",
         "Hội đồng Quốc gia chỉ đạo biên soạn Từ điển bách khoa Việt Nam", BACH_KHOA, "039.9592", "Từ điển"),
    Book("Từ điển bách khoa Việt Nam – Tập 2",
         "Hội đồng Quốc gia chỉ đạo biên soạn Từ điển bách khoa Việt Nam", BACH_KHOA, "039.9592", "Từ điển"),
    Book("Từ điển bách khoa Việt Nam – Tập 3",
         "Hội đồng Quốc gia chỉ đạo biên soạn Từ điển bách khoa Việt Nam", BACH_KHOA, "039.9592", "Từ điển"),
    Book("Từ điển bách khoa Việt Nam – Tập 4",
         "Hội đồng Quốc gia chỉ đạo biên soạn Từ điển bách khoa Việt Nam", BACH_KHOA, "039.9592", "Từ điển"),
)
ENGLISH_REFERENCE: tuple[Book, ...] = (
    Book("Oxford Advanced Learner's Dictionary", "A. S. Hornby", TONG_HOP_HCM, "423", "Từ điển"),
    Book("English Grammar in Use", "Raymond Murphy", TONG_HOP_HCM, "428.2", "Tiếng Anh"),
)

# Study aids per grade 6-9 ("{g}" is the grade); author None means: invent one.
GRADE_REFERENCE: tuple[Book, ...] = (
    Book("Nâng cao và phát triển Toán {g} – Tập một", "Vũ Hữu Bình", GIAO_DUC, "510.76", "Toán học"),
    Book("Bồi dưỡng học sinh giỏi Toán {g}", None, DHQG_HN, "510.76", "Toán học"),
    Book("Bồi dưỡng Ngữ văn {g}", None, DHSP, "807.6", "Ngữ văn"),
    Book("Tuyển chọn văn bản đọc hiểu Ngữ văn {g}", None, DHQG_HN, "807.6", "Ngữ văn"),
    Book("Bài tập bổ trợ Tiếng Anh {g}", None, DHQG_HN, "428.076", "Tiếng Anh"),
    Book("Em học giỏi Khoa học tự nhiên {g}", None, DHSP, "507.6", "Khoa học tự nhiên"),
    Book("Tập bản đồ Lịch sử và Địa lí {g}", "Nhiều tác giả", GIAO_DUC, "912", "Địa lí"),
)

# Textbooks of the 2018 programme: (subject in the title, môn loại, DDC, volumes).
TEXTBOOK_SUBJECTS: tuple[tuple[str, str, str, int], ...] = (
    ("Toán", "Toán học", "510", 2),
    ("Ngữ văn", "Ngữ văn", "807", 2),
    ("Tiếng Anh", "Tiếng Anh", "428", 1),
    ("Khoa học tự nhiên", "Khoa học tự nhiên", "500", 1),
    ("Lịch sử và Địa lí", "Lịch sử và Địa lí", "907", 1),
    ("Giáo dục công dân", "Giáo dục công dân", "170", 1),
    ("Công nghệ", "Công nghệ", "600", 1),
    ("Tin học", "Tin học", "004", 1),
    ("Âm nhạc", "Âm nhạc", "780", 1),
    ("Mĩ thuật", "Mĩ thuật", "741", 1),
    ("Giáo dục thể chất", "Giáo dục thể chất", "796", 1),
    ("Hoạt động trải nghiệm, hướng nghiệp", "Hoạt động trải nghiệm", "371.42", 1),
)
# The subjects every student carries: the shared shelf keeps large class sets of these.
CORE_SUBJECTS: frozenset[str] = frozenset({"Toán", "Ngữ văn", "Tiếng Anh", "Khoa học tự nhiên",
                                           "Lịch sử và Địa lí"})
VOLUME_NAMES: tuple[str, ...] = ("Tập một", "Tập hai")

KNTT = "Kết nối tri thức với cuộc sống"
CANH_DIEU = "Cánh Diều"
CTST = "Chân trời sáng tạo"
SERIES_PUBLISHER: dict[str, str] = {KNTT: GIAO_DUC, CANH_DIEU: DHSP, CTST: GIAO_DUC}
# The general editors we are sure of; every other textbook is credited to its team.
TEXTBOOK_EDITORS: dict[tuple[str, str], str] = {
    (KNTT, "Toán"): "Hà Huy Khoái (Tổng chủ biên)",
    (KNTT, "Ngữ văn"): "Bùi Mạnh Hùng (Tổng chủ biên)",
    (CANH_DIEU, "Ngữ văn"): "Nguyễn Minh Thuyết (Tổng chủ biên)",
}
# The first school year each grade used the new books (grade 6 in 2021, one grade a year).
FIRST_YEAR_OF_GRADE: dict[int, int] = {6: 2021, 7: 2022, 8: 2023, 9: 2024}
# Teachers' editions kept for these subjects (the rest are shared with the textbooks).
TEACHER_EDITION_SUBJECTS: tuple[str, ...] = (
    "Toán", "Ngữ văn", "Tiếng Anh", "Khoa học tự nhiên", "Lịch sử và Địa lí",
    "Giáo dục công dân", "Công nghệ", "Tin học",
)

# Teachers' professional books: ĐKCB prefix NV.
PROFESSIONAL: tuple[Book, ...] = (
    Book("Chương trình giáo dục phổ thông – Chương trình tổng thể", "Bộ Giáo dục và Đào tạo",
         GIAO_DUC, "375.009597", "Nghiệp vụ sư phạm"),
    Book("Chương trình giáo dục phổ thông môn Ngữ văn", "Bộ Giáo dục và Đào tạo",
         GIAO_DUC, "375.8", "Nghiệp vụ sư phạm"),
    Book("Chương trình giáo dục phổ thông môn Toán", "Bộ Giáo dục và Đào tạo",
         GIAO_DUC, "375.51", "Nghiệp vụ sư phạm"),
    Book("Hướng dẫn dạy học môn Ngữ văn trung học cơ sở theo Chương trình giáo dục phổ thông 2018",
         None, DHSP, "807.12", "Nghiệp vụ sư phạm"),
    Book("Hướng dẫn dạy học môn Toán trung học cơ sở theo Chương trình giáo dục phổ thông 2018",
         None, DHSP, "510.712", "Nghiệp vụ sư phạm"),
    Book("Hướng dẫn dạy học môn Khoa học tự nhiên trung học cơ sở", None, DHSP, "507.12",
         "Nghiệp vụ sư phạm"),
    Book("Dạy học phát triển năng lực môn Toán trung học cơ sở", "Nhiều tác giả", DHSP,
         "510.712", "Nghiệp vụ sư phạm"),
    Book("Kiểm tra, đánh giá học sinh trung học cơ sở theo định hướng phát triển năng lực",
         "Nhiều tác giả", DHSP, "371.26", "Nghiệp vụ sư phạm"),
    Book("Sinh hoạt chuyên môn theo nghiên cứu bài học", "Bộ Giáo dục và Đào tạo", GIAO_DUC,
         "371.1", "Nghiệp vụ sư phạm"),
    Book("Công tác chủ nhiệm lớp ở trường trung học cơ sở", None, DHSP, "371.1",
         "Nghiệp vụ sư phạm"),
    Book("Nghiệp vụ thư viện trường học", None, DHSP, "027.8", "Nghiệp vụ thư viện"),
    Book("Khung phân loại thập phân Dewey – DDC 23", "Thư viện Quốc gia Việt Nam", TRI_THUC,
         "025.431", "Nghiệp vụ thư viện"),
    Book("Giáo dục kĩ năng sống cho học sinh trung học cơ sở", None, DHSP, "370.114",
         "Nghiệp vụ sư phạm"),
    Book("Ứng dụng công nghệ thông tin trong dạy học", None, DHQG_HN, "371.334",
         "Nghiệp vụ sư phạm"),
    Book("Giáo dục an toàn giao thông trên đường phố cho học sinh", None, GIAO_DUC, "363.125",
         "Nghiệp vụ sư phạm"),
)
